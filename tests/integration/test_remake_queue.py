"""``JobQueue.remake``: succeeded images whose master is gone go back to the queue, fenced and reported."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from blogimg.config import Settings
from blogimg.db.database import Database
from blogimg.db.tables import GeneratedImage, ImageEvent, ImageVariant
from blogimg.domain import Status
from blogimg.pipeline.generate import generate
from blogimg.testing import FakeProvider
from tests.support import on_both_engines, registry_with, write_posts

pytestmark = on_both_engines


async def test_remake_requeues_only_succeeded_rows_that_still_name_the_lost_master(
        tmp_path: Path, settings: Settings, database: Database) -> None:
    summary = await generate([write_posts(tmp_path / "posts", 3, markers=0)], settings, providers=["fake"],
                             registry=registry_with(FakeProvider("fake")))
    assert summary.succeeded == 3
    files = await database.catalog.image_files()
    lost, stale, other = files
    assert lost.master_key and stale.master_key
    enqueued = await database.queue.remake({lost.image_id: lost.master_key, stale.image_id: "xx/yy/other.jpg"})
    assert enqueued.queued_ids == (lost.image_id,) and enqueued.image_ids == (lost.image_id,)
    async with database.catalog.sessions() as session:
        row = await session.get(GeneratedImage, lost.image_id)
        assert row is not None and row.status == Status.QUEUED and row.batch_id == enqueued.batch_id
        assert row.storage_key is None and row.thumbnail_key is None and row.attempts == 0
        assert await session.scalar(select(func.count()).select_from(ImageVariant)
                                    .where(ImageVariant.image_id == lost.image_id)) == 0
        event = await session.scalar(select(ImageEvent).where(ImageEvent.image_id == lost.image_id)
                                     .order_by(ImageEvent.id.desc()).limit(1))
        assert event is not None and event.status == Status.QUEUED and event.batch_id == enqueued.batch_id
    statuses = await database.queue.statuses([lost.image_id, stale.image_id, other.image_id])
    assert statuses == {lost.image_id: Status.QUEUED, stale.image_id: Status.SUCCEEDED,
                        other.image_id: Status.SUCCEEDED}
    again = await database.queue.remake({lost.image_id: lost.master_key})  # no longer succeeded: untouched
    assert again.queued_ids == ()
