"""Each alert rule fires once when its condition starts and resolves once when it ends, without
flapping at the threshold, and two workers evaluating at once open an alert once — on SQLite and
PostgreSQL. Every opening and closing writes its webhook event in the same transaction.

The rules read the real tables (ledger rows, images, rollups kept by the triggers); the evaluator's
clock is set by each test so windows and budget periods are exact.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, event, insert, select, update

from blogimg.config import Settings
from blogimg.db.database import Database
from blogimg.db.tables import (
    Alert,
    BlogPost,
    GeneratedImage,
    GenerationAttempt,
    ImagePromptRow,
    WebhookDelivery,
    WebhookEndpoint,
)
from blogimg.pipeline.alerting import AlertEvaluator, circuit_states
from blogimg.pipeline.breaker import CircuitBreaker
from tests.support import on_both_engines

pytestmark = on_both_engines

NOW = datetime(2026, 11, 10, 12, 0, 0)  #: mid-month, mid-day: budget periods are unambiguous


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def endpoint(database: Database) -> int:
    """One enabled webhook endpoint, so every event becomes one outbox row."""
    async with database.engine.begin() as connection:
        return int((await connection.execute(insert(WebhookEndpoint).values(
            url="http://127.0.0.1:9/hooks", secret="whsec_" + "A" * 32, enabled=True, source="api")
            .returning(WebhookEndpoint.id))).scalar_one())


@pytest.fixture
async def image_id(database: Database) -> int:
    """A succeeded image that ledger rows can belong to."""
    async with database.engine.begin() as connection:
        post = (await connection.execute(insert(BlogPost).values(
            slug="alerts", title="Alerts", markdown="", summary="").returning(BlogPost.id))).scalar_one()
        prompt = (await connection.execute(insert(ImagePromptRow).values(
            post_id=post, kind="inline", position=0, prompt="a kite", size="1024x1024", fingerprint="f" * 64,
            alt_hint="", heading="").returning(ImagePromptRow.id))).scalar_one()
        return int((await connection.execute(insert(GeneratedImage).values(
            prompt_id=prompt, post_id=post, status="succeeded", attempts=1, tags=[], created_at=NOW, updated_at=NOW)
            .returning(GeneratedImage.id))).scalar_one())


def evaluator(database: Database, settings: Settings, clock: Clock, **overrides: Any) -> AlertEvaluator:
    chosen = settings.model_copy(update={"alert_window_minutes": 1.0, "alert_min_calls": 10, **overrides})
    return AlertEvaluator(database, chosen, clock=clock)


async def add_calls(database: Database, image_id: int, at: datetime, *, ok: int, failed: int,
                    provider: str = "fake", latency_ms: int = 100, cost_usd: float = 0.0) -> None:
    rows = [{"image_id": image_id, "attempt": n + 1, "provider": provider, "model": "fake-1",
             "outcome": "ok" if n < ok else "transient", "latency_ms": latency_ms, "cost_usd": cost_usd,
             "started_at": at + timedelta(milliseconds=n)} for n in range(ok + failed)]
    async with database.engine.begin() as connection:
        await connection.execute(insert(GenerationAttempt), rows)


async def episodes(database: Database) -> list[tuple[str, str, str]]:
    async with database.engine.connect() as connection:
        return [tuple(row) for row in await connection.execute(  # type: ignore[misc]
            select(Alert.rule, Alert.subject, Alert.state).order_by(Alert.id))]


async def events(database: Database) -> list[tuple[str, str]]:
    async with database.engine.connect() as connection:
        return [(kind, message_id) for kind, message_id in await connection.execute(
            select(WebhookDelivery.event_type, WebhookDelivery.message_id).order_by(WebhookDelivery.id))]


@pytest.fixture
async def second_database(settings: Settings) -> AsyncIterator[Database]:
    """The same catalogue opened again: another worker's engine and connections."""
    opened = await Database.open(settings.database_url)
    yield opened
    await opened.close()


async def test_failure_rate_fires_once_and_resolves_once_with_its_events(
        database: Database, settings: Settings, endpoint: int, image_id: int) -> None:
    clock = Clock()
    rules = evaluator(database, settings, clock)
    await add_calls(database, image_id, NOW - timedelta(seconds=30), ok=7, failed=3)  # 30% of 10
    changes = await rules.evaluate()
    assert [(alert.rule, alert.subject) for alert in changes.fired] == [("failure_rate", "fake")]
    alert_id = changes.fired[0].id
    assert changes.fired[0].value == pytest.approx(0.3)
    again = await rules.evaluate()  # still failing: no second episode, no second event
    assert again.fired == again.resolved == []
    clock.now = NOW + timedelta(minutes=2)  # the failures leave the window; the provider is fine now
    await add_calls(database, image_id, clock.now - timedelta(seconds=10), ok=12, failed=0)
    resolved = await rules.evaluate()
    assert [alert.id for alert in resolved.resolved] == [alert_id]
    assert (await rules.evaluate()).resolved == []
    assert await episodes(database) == [("failure_rate", "fake", "resolved")]
    assert await events(database) == [("alert.firing", f"alert:{alert_id}:firing"),
                                      ("alert.resolved", f"alert:{alert_id}:resolved")]


async def test_a_quiet_evaluation_takes_no_write_lock(
        database: Database, settings: Settings, endpoint: int, image_id: int) -> None:
    """Every rule read (budgets and storage too), nothing firing: no write at all — on SQLite no
    BEGIN IMMEDIATE either, so the evaluation never queues behind the workers' writes nor holds them up."""
    clock = Clock()
    rules = evaluator(database, settings, clock, budget_daily_usd=10.0, budget_monthly_usd=100.0,
                      storage_limit_bytes=10**9, alert_processing_p95_ms=5000.0, alert_provider_latency_p95_ms=5000.0)
    await add_calls(database, image_id, NOW - timedelta(seconds=30), ok=10, failed=0, cost_usd=0.01)
    writes: list[str] = []

    def count(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.strip().upper().startswith(("BEGIN IMMEDIATE", "INSERT", "UPDATE", "DELETE")):
            writes.append(statement.strip().split()[0].upper() + (" IMMEDIATE" if "IMMEDIATE" in statement else ""))

    event.listen(database.engine.sync_engine, "before_cursor_execute", count)
    try:
        changes = await rules.evaluate()
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", count)
    assert changes.fired == changes.resolved == []
    assert writes == []
    await add_calls(database, image_id, NOW - timedelta(seconds=20), ok=0, failed=10)  # now it fires: one write
    event.listen(database.engine.sync_engine, "before_cursor_execute", count)
    try:
        assert [alert.rule for alert in (await rules.evaluate()).fired] == ["failure_rate"]
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", count)
    assert "INSERT" in writes
    if database.engine.dialect.name == "sqlite":
        assert writes.count("BEGIN IMMEDIATE") == 1


async def test_a_rate_hovering_at_the_threshold_does_not_flap(
        database: Database, settings: Settings, endpoint: int, image_id: int) -> None:
    clock = Clock()
    rules = evaluator(database, settings, clock)
    # One minute apart, each window holds only its own 100 calls: failed share 25%, 19%, 21%, 19%, 21%.
    for step, failed in enumerate((25, 19, 21, 19, 21)):
        clock.now = NOW + timedelta(minutes=2 * step)
        await add_calls(database, image_id, clock.now - timedelta(seconds=20), ok=100 - failed, failed=failed)
        await rules.evaluate()
    assert await episodes(database) == [("failure_rate", "fake", "firing")]
    # Below the threshold less its 10% margin (18%): resolved, once; hovering below 20% again opens nothing.
    for step, failed in enumerate((10, 19, 20), start=5):
        clock.now = NOW + timedelta(minutes=2 * step)
        await add_calls(database, image_id, clock.now - timedelta(seconds=20), ok=100 - failed, failed=failed)
        await rules.evaluate()
    assert await episodes(database) == [("failure_rate", "fake", "resolved")]
    assert [kind for kind, _ in await events(database)] == ["alert.firing", "alert.resolved"]


async def test_too_few_calls_cannot_fire(database: Database, settings: Settings, image_id: int) -> None:
    clock = Clock()
    await add_calls(database, image_id, NOW - timedelta(seconds=30), ok=0, failed=9)  # 100% of 9 < 10 calls
    assert (await evaluator(database, settings, clock).evaluate()).fired == []


async def test_two_workers_evaluating_at_once_fire_and_resolve_once(
        database: Database, second_database: Database, settings: Settings, endpoint: int, image_id: int) -> None:
    clock = Clock()
    first, second = evaluator(database, settings, clock), evaluator(second_database, settings, clock)
    await add_calls(database, image_id, NOW - timedelta(seconds=30), ok=5, failed=5)
    fired = await asyncio.gather(*(rules.evaluate() for rules in (first, second, first, second)))
    assert sum(len(changes.fired) for changes in fired) == 1
    clock.now = NOW + timedelta(minutes=5)  # nothing in the window: nothing is failing
    resolved = await asyncio.gather(*(rules.evaluate() for rules in (first, second, first, second)))
    assert sum(len(changes.resolved) for changes in resolved) == 1
    assert [kind for kind, _ in await events(database)] == ["alert.firing", "alert.resolved"]


async def test_budget_levels_fire_per_period_and_the_day_resolves_at_midnight(
        database: Database, settings: Settings, endpoint: int, image_id: int) -> None:
    clock = Clock()
    rules = evaluator(database, settings, clock, budget_daily_usd=1.0, budget_monthly_usd=10.0)
    await add_calls(database, image_id, NOW - timedelta(hours=1), ok=17, failed=0, cost_usd=0.05)  # $0.85
    assert {(a.rule, a.subject) for a in (await rules.evaluate()).fired} == {("budget_daily", "80%")}
    await add_calls(database, image_id, NOW - timedelta(minutes=30), ok=3, failed=0, cost_usd=0.05)  # $1.00
    assert {(a.rule, a.subject) for a in (await rules.evaluate()).fired} == {("budget_daily", "100%")}
    clock.now = NOW + timedelta(days=1)  # a new UTC day: nothing spent today, $1 this month of $10
    assert {(a.rule, a.subject) for a in (await rules.evaluate()).resolved} == {
        ("budget_daily", "80%"), ("budget_daily", "100%")}
    assert (await rules.evaluate()).fired == []
    unset = evaluator(database, settings, clock)  # no budget set: no budget rule
    await add_calls(database, image_id, clock.now - timedelta(minutes=1), ok=20, failed=0, cost_usd=1.0)
    assert (await unset.evaluate()).fired == []


async def test_storage_near_its_limit(database: Database, settings: Settings, image_id: int) -> None:
    clock = Clock()
    rules = evaluator(database, settings, clock, storage_limit_bytes=1000)
    async with database.engine.begin() as connection:
        await connection.execute(update(GeneratedImage).where(GeneratedImage.id == image_id).values(
            bytes_stored=950, storage_key="aa/bb/master.png"))  # a stored master (variants count alike)
    assert [(a.rule, a.value) for a in (await rules.evaluate()).fired] == [("storage", 950.0)]
    assert evaluator(database, settings, clock).settings.storage_limit_bytes is None
    async with database.engine.begin() as connection:
        await connection.execute(update(GeneratedImage).where(GeneratedImage.id == image_id).values(bytes_stored=850))
    assert (await rules.evaluate()).resolved == []  # 85%: within the margin below 90%
    async with database.engine.begin() as connection:
        await connection.execute(update(GeneratedImage).where(GeneratedImage.id == image_id).values(bytes_stored=100))
    assert [a.rule for a in (await rules.evaluate()).resolved] == ["storage"]


async def test_provider_latency_and_imaging_time_p95(database: Database, settings: Settings, image_id: int) -> None:
    clock = Clock()
    rules = evaluator(database, settings, clock, alert_provider_latency_p95_ms=5000.0, alert_processing_p95_ms=800.0,
                      alert_min_calls=3)
    await add_calls(database, image_id, NOW - timedelta(seconds=30), ok=10, failed=0, provider="slow", latency_ms=9000)
    await add_calls(database, image_id, NOW - timedelta(seconds=30), ok=10, failed=0, provider="quick", latency_ms=50)
    async with database.engine.begin() as connection:
        await connection.execute(update(GeneratedImage).values(finished_at=NOW - timedelta(seconds=5), processing_ms=2000))
        for n in range(3):
            await connection.execute(insert(GeneratedImage).values(
                prompt_id=select(ImagePromptRow.id).scalar_subquery(), post_id=select(BlogPost.id).scalar_subquery(),
                variation=n + 1, status="succeeded", attempts=1, tags=[], processing_ms=1500,
                finished_at=NOW - timedelta(seconds=5), created_at=NOW, updated_at=NOW))
    fired = {(a.rule, a.subject) for a in (await rules.evaluate()).fired}
    assert fired == {("provider_latency_p95", "slow"), ("processing_p95", "")}
    clock.now = NOW + timedelta(minutes=5)  # nothing finished in the window any more
    resolved = {(a.rule, a.subject) for a in (await rules.evaluate()).resolved}
    assert resolved == {("provider_latency_p95", "slow"), ("processing_p95", "")}


async def test_a_job_stuck_in_the_queue(database: Database, settings: Settings, image_id: int) -> None:
    clock = Clock()
    rules = evaluator(database, settings, clock, alert_queued_minutes=30.0)
    async with database.engine.begin() as connection:
        await connection.execute(update(GeneratedImage).values(status="queued", updated_at=NOW - timedelta(minutes=20)))
    assert (await rules.evaluate()).fired == []
    clock.now = NOW + timedelta(minutes=11)  # waited 31 minutes
    assert [a.rule for a in (await rules.evaluate()).fired] == ["queued_too_long"]
    async with database.engine.begin() as connection:
        await connection.execute(update(GeneratedImage).values(status="running", updated_at=clock.now))
    assert [a.rule for a in (await rules.evaluate()).resolved] == ["queued_too_long"]


async def test_an_open_circuit_resolves_only_when_no_worker_sees_it_open(
        database: Database, second_database: Database, settings: Settings) -> None:
    breaker = CircuitBreaker(threshold=1, cooldown=60)
    read = circuit_states({"fake": breaker})
    assert read() == {"fake": "closed"}
    breaker.record_failure()
    clock = Clock()
    here, there = dict(read()), {"fake": "closed"}
    assert here == {"fake": "open"}
    chosen = settings.model_copy(update={"alert_evaluation_seconds": 30.0})
    first = AlertEvaluator(database, chosen, lambda: here, clock=clock)
    second = AlertEvaluator(second_database, chosen, lambda: there, clock=clock)
    assert [(a.rule, a.subject) for a in (await first.evaluate()).fired] == [("circuit_open", "fake")]
    for _ in range(4):  # the other worker's circuit is closed, but this one still sees it open
        clock.now += timedelta(seconds=30)
        assert (await second.evaluate()).resolved == []
        await first.evaluate()
    here["fake"] = "half-open"  # probing: not closed, still firing
    clock.now += timedelta(seconds=30)
    assert (await first.evaluate()).resolved == []
    here["fake"] = "closed"
    clock.now += timedelta(seconds=30)
    assert (await first.evaluate()).resolved == []  # seen open one evaluation ago
    clock.now += timedelta(seconds=31)
    assert [a.rule for a in (await second.evaluate()).resolved] == ["circuit_open"]
    assert await episodes(database) == [("circuit_open", "fake", "resolved")]


async def test_an_alert_whose_rule_has_nothing_to_measure_resolves(
        database: Database, settings: Settings, image_id: int) -> None:
    clock = Clock()
    await add_calls(database, image_id, NOW - timedelta(seconds=30), ok=0, failed=10)
    await evaluator(database, settings, clock).evaluate()
    async with database.engine.begin() as connection:
        await connection.execute(delete(GenerationAttempt))
    assert [a.rule for a in (await evaluator(database, settings, clock).evaluate()).resolved] == ["failure_rate"]
