"""Upgrading a catalogue that holds data: what 0005 and 0006 do to rows written by older versions."""

from __future__ import annotations

import hashlib
from pathlib import Path

import sqlalchemy as sa
from alembic import command

from blogimg.config import Settings
from blogimg.db.database import Database
from blogimg.db.engine import alembic_config
from blogimg.db.jobs import PromptsToEnqueue
from blogimg.db.posts import PromptSpec
from blogimg.domain import PromptKind, Size
from tests.support import on_both_engines


def migrate_to(database: Path, revision: str) -> sa.Engine:
    engine = sa.create_engine(f"sqlite:///{database}")
    with engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    return engine


async def test_prompts_sent_to_the_api_before_the_upgrade_find_their_images(tmp_path: Path, settings: Settings) -> None:
    path = tmp_path / "old.db"
    engine = migrate_to(path, "0004")
    old_fingerprint = hashlib.sha256("\x1f".join(("api", "inline", "A Red Kite", "1024x1024")).encode()).hexdigest()
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO blog_posts (id, slug, title, markdown, summary, tags, language, images_enabled, created_at, "
            "updated_at) VALUES (1, 'api-prompts', 'API', '', '', '[]', 'en', 1, '2026-01-01', '2026-01-01')")
        connection.exec_driver_sql(
            "INSERT INTO image_prompts (id, post_id, kind, position, prompt, size, fingerprint, alt_hint, heading, "
            f"created_at, updated_at) VALUES (7, 1, 'inline', 1000, 'A Red Kite', '1024x1024', '{old_fingerprint}', "
            "'', '', '2026-01-01', '2026-01-01')")
        connection.exec_driver_sql(
            "INSERT INTO generated_images (id, prompt_id, post_id, variation, status, attempts, tags, url, "
            "storage_key, created_at, updated_at) VALUES (3, 7, 1, 0, 'succeeded', 1, '[]', '/files/a/b/c.webp', "
            "'a/b/c.webp', '2026-01-01', '2026-01-01')")
    engine.dispose()

    database = await Database.open(f"sqlite+aiosqlite:///{path}")  # upgrades to the newest revision
    try:
        again = await database.queue.enqueue(PromptsToEnqueue(
            post_id=None, prompts=[PromptSpec("A Red Kite", PromptKind.INLINE, Size(1024, 1024))]))
        assert (again.image_ids, again.queued_ids) == ((3,), ())  # found, not made (and paid for) again
        async with database.engine.connect() as connection:
            columns = {row[1] for row in await connection.exec_driver_sql("PRAGMA table_info(generated_images)")}
            triggers = {row[0] for row in await connection.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        assert "url" not in columns and "thumbnail_url" not in columns
        # Dropping columns in place kept the text-search triggers of 0004 (a table copy would not).
        assert {"generated_images_text_insert", "generated_images_text_update"} <= triggers
    finally:
        await database.close()


async def test_ids_are_never_reused_and_the_upgrade_keeps_every_row(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    engine = migrate_to(path, "0006")
    with engine.begin() as connection:
        for statement in (
            "INSERT INTO blog_posts (id, slug, title, markdown, summary, tags, language, images_enabled, created_at, "
            "updated_at) VALUES (1, 'p', 'P', '', '', '[]', 'en', 1, '2026-01-01', '2026-01-01')",
            "INSERT INTO image_prompts (id, post_id, kind, position, prompt, size, fingerprint, alt_hint, heading, "
            "created_at, updated_at) VALUES (1, 1, 'inline', 0, 'a lighthouse', '1024x1024', 'f', '', '', "
            "'2026-01-01', '2026-01-01')",
            "INSERT INTO generated_images (id, prompt_id, post_id, variation, status, attempts, tags, alt_text, "
            "created_at, updated_at) VALUES (5, 1, 1, 0, 'succeeded', 1, '[]', 'a harbour light', '2026-01-01', "
            "'2026-01-01')",
            "INSERT INTO image_variants (id, image_id, format, width, height, bytes, storage_key, created_at) "
            "VALUES (1, 5, 'webp', 480, 320, 100, 'aa/bb/x.webp', '2026-01-01')",
            "INSERT INTO generation_attempts (id, image_id, attempt, provider, outcome, latency_ms, started_at) "
            "VALUES (1, 5, 1, 'card', 'ok', 3, '2026-01-01')",
        ):
            connection.exec_driver_sql(statement)
    engine.dispose()

    database = await Database.open(f"sqlite+aiosqlite:///{path}")
    try:
        async with database.engine.connect() as connection:
            for table in ("blog_posts", "image_prompts", "generated_images", "image_variants", "generation_attempts"):
                # Rebuilding a parent table (0007) cascaded into none of its children.
                assert (await connection.exec_driver_sql(f"SELECT count(*) FROM {table}")).scalar() == 1, table
            assert (await connection.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
        assert [item.image.id for item in (await database.catalog.search(
            text="harbour", provider=None, status=None, post_id=None, created_from=None, created_to=None,
            cursor=None, limit=5)).items] == [5]  # the text index still answers after the rebuild
        assert await database.catalog.delete_image(5) is not None
        again = await database.queue.enqueue(PromptsToEnqueue(
            post_id=1, prompts=[PromptSpec("a lighthouse", PromptKind.INLINE, Size(1024, 1024))]))
        assert again.image_ids[0] > 5  # the deleted newest id is not handed out again
    finally:
        await database.close()


@on_both_engines
def test_head_downgrades_to_0009_and_upgrades_again(database_url: str) -> None:
    """Every migration after 0009 (webhooks, alerts, metric counts) can be undone and done again."""
    sync_url = database_url.replace("+aiosqlite", "")  # psycopg is sync and async alike
    if sync_url.startswith("sqlite"):
        Path(sync_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(sync_url)
    try:
        for revision in ("head", "0009", "head"):
            with engine.begin() as connection:
                config = alembic_config()
                config.attributes["connection"] = connection
                if revision == "0009":
                    command.downgrade(config, revision)
                else:
                    command.upgrade(config, revision)
            tables = set(sa.inspect(engine).get_table_names())
            added = {"webhook_endpoints", "webhook_deliveries", "alerts", "metric_counts", "worker_circuits"}
            assert (added <= tables) if revision == "head" else not (added & tables), revision
        with engine.connect() as connection:
            assert connection.scalar(sa.text("SELECT version_num FROM alembic_version")) == "0014"
    finally:
        engine.dispose()
