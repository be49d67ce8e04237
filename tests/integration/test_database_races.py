"""Commands started together: they migrate one fresh database once, and save the same posts and
prompts at once without tripping over each other's unique keys.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import func, select

from blogimg.config import Settings
from blogimg.db.database import Database
from blogimg.db.engine import alembic_config
from blogimg.db.jobs import PostsToEnqueue, PromptsToEnqueue
from blogimg.db.posts import PromptSpec
from blogimg.db.tables import BlogPost, GeneratedImage, ImagePromptRow
from blogimg.domain import PromptKind, Size
from blogimg.pipeline.generate import read_posts
from tests.support import on_both_engines, write_posts

AT_ONCE = 8

#: A command's start, cut down to what races: import everything, wait for the common moment
#: (so that eight interpreters' different start-up times do not keep them apart), open the catalogue.
OPEN_AT = """
import asyncio, sys, time
from blogimg.db.database import Database

async def main() -> None:
    time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
    await (await Database.open(sys.argv[1])).close()

asyncio.run(main())
"""


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_commands_started_together_on_a_fresh_database_all_find_it_migrated(database_url: str) -> None:
    # On SQLite the migration's BEGIN IMMEDIATE already makes starts wait for each other
    # (0 failures in 24 such starts before the lock was added); PostgreSQL needed the lock.
    start = time.time() + 5  # time enough for all eight interpreters to import blogimg
    processes = [subprocess.Popen([sys.executable, "-c", OPEN_AT, database_url, str(start)],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for _ in range(AT_ONCE)]
    outputs = [process.communicate(timeout=180)[0] for process in processes]
    failed = [next((line for line in reversed(output.splitlines()) if "Error" in line), output[-300:])
              for process, output in zip(processes, outputs, strict=True) if process.returncode != 0]
    assert failed == [], f"{len(failed)} of {AT_ONCE} starts failed: {failed[0][:300]}"
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()

    async def versions() -> list[str]:
        database = await Database.open(database_url)
        try:
            async with database.engine.connect() as connection:
                return [row[0] for row in await connection.exec_driver_sql("SELECT version_num FROM alembic_version")]
        finally:
            await database.close()

    assert asyncio.run(versions()) == [head]


@on_both_engines
async def test_runs_saving_the_same_posts_at_once_all_succeed(tmp_path: Path, settings: Settings) -> None:
    posts = read_posts([write_posts(tmp_path / "posts", 4, markers=2)], settings)
    first = await Database.open(settings.database_url)  # migrated once, before the race
    databases = [first, *[await Database.open(settings.database_url) for _ in range(AT_ONCE - 1)]]
    try:
        # As `generate` runs do: separate processes, so separate engines and connections.
        batches = await asyncio.gather(*(database.queue.enqueue(PostsToEnqueue(posts)) for database in databases))
        assert len({batch.image_ids for batch in batches}) == 1 and len(batches[0].image_ids) == 12
        assert len({batch.post_ids for batch in batches}) == 1

        again = read_posts([write_posts(tmp_path / "more", 1, markers=3, name="more-{number}",
                                        title="More {number}")], settings)[0]
        saved = await asyncio.gather(*(database.posts.save(again) for database in databases))
        assert len({(post.post_id, tuple(prompt.id for prompt in post.prompts)) for post in saved}) == 1

        # API requests without a post share one placeholder post and, for one prompt, one image.
        request = PromptsToEnqueue(post_id=None, prompts=[PromptSpec("a red kite", PromptKind.INLINE,
                                                                     Size(1024, 1024))])
        answers = await asyncio.gather(*(database.queue.enqueue(request) for database in databases))
        assert len({answer.image_ids for answer in answers}) == 1

        async with first.sessions() as session:
            counted = [await session.scalar(select(func.count()).select_from(table))
                       for table in (BlogPost, ImagePromptRow, GeneratedImage)]
        assert counted == [4 + 1 + 1, 12 + 4 + 1, 12 + 1]
    finally:
        for database in databases:
            await database.close()
