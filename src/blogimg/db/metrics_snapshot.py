"""What /metrics says, read from the catalogue in one go at scrape time (api/metrics.py formats it).

Every number comes from the database, none from a process's memory, so any API node answers the
same and every worker process on every machine counts exactly once. No read grows with the
catalogue:

- provider calls, their known cost and their latency histogram: ``attempt_rollups`` (db/rollups.py),
  one row per (day, provider, model, outcome, latency bucket);
- images by status: ``image_rollups``;
- the oldest queued job: the ``(status, …)`` index, over the queued rows only;
- spend today and this month (as the budget counts it: the cost, else the reserved estimate):
  ``attempt_rollups`` since the first of the UTC month, one row per day;
- bytes stored by format (masters as ``master``) and imaging time: ``metric_counts`` (migration
  0012), a few dozen rows;
- circuit states: ``worker_circuits``, one row per live worker and provider;
- webhook deliveries pending and failed: the ``(status, next_attempt_at)`` index of
  ``webhook_deliveries``; delivered ones, never pruned, only as the counter that migration
  0012's trigger keeps in ``metric_counts``;
- alerts firing: the partial index of firing alerts.

The configured limits (budgets, storage limit) are exported as they are set, so alerting rules
compare against the application's own numbers.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from blogimg.db import rollups
from blogimg.db.engine import reader
from blogimg.db.metric_counts import Count, live_circuits, read_counts
from blogimg.db.operations_tables import Alert, WebhookDelivery
from blogimg.db.tables import GeneratedImage, utcnow
from blogimg.domain import Outcome, Status


@dataclass(frozen=True, slots=True)
class CallTotals:
    """Provider calls of one provider, model and outcome, all time."""

    calls: int = 0
    cost_usd: float = 0.0  #: known costs only
    unknown_cost_calls: int = 0


@dataclass(frozen=True, slots=True)
class Limits:
    """The configured limits /metrics exports (None: not set, not exported)."""

    budget_daily_usd: float | None = None
    budget_monthly_usd: float | None = None
    storage_limit_bytes: int | None = None


@dataclass
class MetricsSnapshot:
    """Everything one scrape reports, read at once."""

    latency_bounds_ms: list[int]  #: the rollups' bucket upper bounds, by bucket number
    #: (provider, model) → {bucket number: calls that ended}, pending calls left out
    call_latency: dict[tuple[str, str], dict[int, int]] = field(default_factory=dict)
    calls: dict[tuple[str, str, str], CallTotals] = field(default_factory=dict)  #: (provider, model, outcome)
    images: dict[Status, int] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    spent_today_usd: float = 0.0  #: the UTC day's spending as the budget counts it
    spent_this_month_usd: float = 0.0
    oldest_queued_seconds: float = 0.0  #: 0 with nothing queued
    circuits: dict[tuple[str, str], int] = field(default_factory=dict)  #: (provider, state) → live workers
    counts: dict[str, dict[str, Count]] = field(default_factory=dict)  #: metric_counts: stored_bytes, imaging_ms
    webhook_deliveries: dict[str, int] = field(default_factory=dict)  #: pending, failed → rows
    webhook_delivered: int = 0  #: deliveries that became delivered, all time (a counter)
    webhook_retrying: int = 0  #: pending deliveries that have failed at least once
    alerts_firing: dict[str, int] = field(default_factory=dict)  #: rule → firing alerts


async def read_snapshot(engine: AsyncEngine, circuits_fresh_for: timedelta, limits: Limits | None = None) -> MetricsSnapshot:
    """Read what /metrics reports: PostgreSQL's pending rollup deltas are folded first (bounded)."""
    now = utcnow()
    deltas = engine.dialect.name == "postgresql"
    if deltas:
        async with engine.begin() as connection:
            await rollups.fold(connection)
    async with reader(engine).connect() as connection:  # no write lock: a scrape only reads
        snapshot = MetricsSnapshot(await rollups.latency_bounds(connection), limits=limits or Limits())
        today, month_start = now.date().isoformat(), now.date().replace(day=1).isoformat()
        for day, *_, spent in await connection.execute(rollups.attempt_totals("day", since=month_start, deltas=deltas)):
            snapshot.spent_this_month_usd += float(spent or 0.0)
            snapshot.spent_today_usd += float(spent or 0.0) if day == today else 0.0
        latency: dict[tuple[str, str], dict[int, int]] = defaultdict(lambda: defaultdict(int))
        calls: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0, 0.0, 0])
        for provider, model, outcome, bucket, count, known, unknown, _ in await connection.execute(
                rollups.attempt_totals("provider", "model", "outcome", "latency_bucket", deltas=deltas)):
            totals = calls[(provider, model, outcome)]
            totals[0] += int(count)
            totals[1] += float(known or 0.0)
            totals[2] += int(unknown or 0)
            if outcome != Outcome.PENDING and bucket >= 0:
                latency[(provider, model)][int(bucket)] += int(count)
        snapshot.calls = {key: CallTotals(int(total[0]), round(total[1], 6), int(total[2]))
                          for key, total in calls.items() if total[0]}
        snapshot.call_latency = {key: dict(buckets) for key, buckets in latency.items()}
        snapshot.images = {status: 0 for status in Status}
        for status, count, *_ in await connection.execute(rollups.image_totals("status", deltas=deltas)):
            snapshot.images[Status(status)] += int(count)
        oldest: datetime | None = await connection.scalar(
            select(func.min(GeneratedImage.updated_at)).where(GeneratedImage.status == Status.QUEUED))
        snapshot.oldest_queued_seconds = max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
        snapshot.circuits = await live_circuits(connection, circuits_fresh_for)
        snapshot.counts = await read_counts(connection)
        snapshot.webhook_deliveries = {status: int(count) for status, count in await connection.execute(
            select(WebhookDelivery.status, func.count()).where(WebhookDelivery.status.in_(("pending", "failed")))
            .group_by(WebhookDelivery.status))}
        snapshot.webhook_delivered = snapshot.counts.get("webhook_deliveries", {}).get("delivered", Count(0, 0)).count
        snapshot.webhook_retrying = int(await connection.scalar(
            select(func.count()).where(WebhookDelivery.status == "pending", WebhookDelivery.attempts > 0)) or 0)
        snapshot.alerts_firing = {rule: int(count) for rule, count in await connection.execute(
            select(Alert.rule, func.count()).where(Alert.state == "firing").group_by(Alert.rule))}
    return snapshot
