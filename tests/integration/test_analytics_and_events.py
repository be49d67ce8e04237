"""Analytics read from the rollups that the database keeps for every write (spend by day, month and
provider, cost per accepted image, regeneration), and pruning old status events (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import insert, select

from blogimg.db.analytics import Analytics
from blogimg.db.database import Database
from blogimg.db.tables import (
    BlogPost,
    GeneratedImage,
    GenerationAttempt,
    ImageEvent,
    ImagePromptRow,
    utcnow,
)
from blogimg.domain import Status
from blogimg.pipeline.bulk_actions import prune_events
from tests.support import on_both_engines

pytestmark = on_both_engines
JANUARY, FEBRUARY = datetime(2026, 1, 30, 12), datetime(2026, 2, 2, 9)


async def catalogue(database: Database) -> None:
    """Three images: two made by "alpha" in January (one of them made twice), one failed in February."""
    async with database.sessions.begin() as session:
        post = BlogPost(slug="p", title="P", markdown="")
        session.add(post)
        await session.flush()
        prompt = ImagePromptRow(post_id=post.id, kind="inline", position=0, prompt="x", size="64x64",
                                fingerprint="f" * 64)
        session.add(prompt)
        await session.flush()
        images = [GeneratedImage(prompt_id=prompt.id, post_id=post.id, variation=n, status=status, provider=provider,
                                 model=model, attempts=1, created_at=when, updated_at=when, tags=[])
                  for n, (status, provider, model, when) in enumerate([
                      (Status.SUCCEEDED, "alpha", "a-1", JANUARY), (Status.SUCCEEDED, "alpha", "a-1", JANUARY),
                      (Status.FAILED, None, None, FEBRUARY)])]
        session.add_all(images)
        await session.flush()
        first, second, third = (image.id for image in images)
        await session.execute(insert(GenerationAttempt), [
            {"image_id": image_id, "attempt": attempt, "provider": "alpha", "model": "a-1", "outcome": outcome,
             "latency_ms": 100, "cost_usd": cost, "started_at": when}
            for image_id, attempt, outcome, cost, when in [
                (first, 1, "ok", 0.02, JANUARY), (second, 1, "transient", 0.0, JANUARY),
                (second, 2, "ok", 0.02, JANUARY), (second, 3, "ok", 0.02, JANUARY),
                (third, 1, "refused", None, FEBRUARY)]])


async def test_spend_by_day_month_and_provider(database: Database) -> None:
    await catalogue(database)
    analytics = Analytics(database.engine)
    days, total = await analytics.spend("day")
    assert [row.key for row in days] == ["2026-01-30", "2026-02-02"]
    assert (total.calls, total.ok_calls, total.cost_usd, total.unknown_cost_calls) == (5, 3, 0.06, 1)
    assert (total.accepted_images, total.failed_images) == (2, 1)
    assert total.cost_per_accepted_image == 0.03 and total.calls_per_accepted_image == 2.5
    assert total.regeneration_rate == 0.5  # 3 ok calls for 2 images: one made twice
    months, _ = await analytics.spend("month")
    assert [(row.key, row.calls, row.accepted_images, row.failed_images) for row in months] == [
        ("2026-01", 4, 2, 0), ("2026-02", 1, 0, 1)]
    assert months[1].cost_per_accepted_image is None and months[1].regeneration_rate is None
    providers, _ = await analytics.spend("provider")
    assert [(row.key, row.calls, row.accepted_images, row.failed_images) for row in providers] == [
        ("(none)", 0, 0, 1), ("alpha", 5, 2, 0)]
    recent, recent_total = await analytics.spend("day", days=7)
    assert recent == [] and recent_total.calls == 0  # all of it is older than a week


async def events(database: Database, ages_in_days: list[float]) -> list[int]:
    now = utcnow()
    async with database.sessions.begin() as session:
        await session.execute(insert(ImageEvent), [
            {"image_id": 1, "batch_id": None, "status": "queued", "created_at": now - timedelta(days=age)}
            for age in ages_in_days])
    async with database.sessions() as session:
        return list(await session.scalars(select(ImageEvent.id).order_by(ImageEvent.id)))


async def test_prune_keeps_the_retention_and_the_newest_event(database: Database) -> None:
    ids = await events(database, [90, 60, 40, 31, 29, 2, 0])
    assert await prune_events(database, 30) == 4
    async with database.sessions() as session:
        assert list(await session.scalars(select(ImageEvent.id).order_by(ImageEvent.id))) == ids[4:]
    assert await prune_events(database, 30) == 0


async def test_prune_leaves_the_newest_event_however_old(database: Database) -> None:
    ids = await events(database, [50, 45, 40])
    assert await prune_events(database, 30) == 2
    assert await database.catalog.latest_event_id() == ids[-1]  # SSE's "now" stays where it was
    with pytest.raises(Exception, match="more than 0 days"):
        await prune_events(database, 0)
