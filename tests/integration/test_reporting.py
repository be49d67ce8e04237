"""Batch progress over the images a batch lists, however many it lists."""

from __future__ import annotations

from pathlib import Path

from blogimg.config import Settings
from blogimg.db.jobs import PostsToEnqueue
from blogimg.db.tables import Batch
from blogimg.domain import Status
from blogimg.pipeline.generate import read_posts
from tests.support import on_both_engines, write_posts


@on_both_engines
async def test_a_batch_listing_more_ids_than_a_statement_takes_is_counted(
        tmp_path: Path, settings: Settings, database) -> None:
    enqueued = await database.queue.enqueue(PostsToEnqueue(read_posts([write_posts(tmp_path / "posts", 2)], settings)))
    assert len(enqueued.image_ids) == 6
    # 70,000 ids: more than SQLite (32,766) or PostgreSQL (65,535) take as parameters of one statement.
    listed = [*range(1_000_000, 1_070_000), *enqueued.image_ids]
    async with database.sessions.begin() as session:
        (await session.get(Batch, enqueued.batch_id)).image_ids = listed
    progress = await database.reporting.batch_progress(enqueued.batch_id)
    assert progress.counts == {Status.QUEUED: 6, Status.RUNNING: 0, Status.SUCCEEDED: 0, Status.FAILED: 0}
    assert not progress.done and progress.image_ids == listed
