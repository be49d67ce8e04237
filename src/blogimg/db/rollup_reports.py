"""The reports read from the rollups: daily stats, the day series, provider health and the
overview's totals. Their cost does not grow with the catalogue (db/rollups.py); days are UTC days.

``Reporting`` (db/reporting.py) offers these beside the reports that read the rows themselves.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, union_all
from sqlalchemy.ext.asyncio import AsyncEngine

from blogimg.db import rollups
from blogimg.db.tables import GenerationAttempt, utcnow
from blogimg.domain import Outcome, Status

_FOLD_EVERY_SECONDS = 1.0  #: the deltas left meanwhile are read as they are: exact either way


@dataclass(frozen=True, slots=True)
class DailyStats:
    """Images of one provider, model and status made on one UTC day (of ``created_at``: queued).

    Latency percentiles come from the rollups' histogram: the upper bound of the bucket holding
    the nearest-rank value, at most ~9% above it (db/rollups.py).
    """

    provider: str | None
    model: str | None
    status: Status
    day: str
    count: int
    success_rate: float | None  #: succeeded / all of this provider, model and day
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    cost_usd: float  #: the known cost of every call made for these images, on any provider
    unknown_cost_images: int  #: succeeded images with a call of unknown cost
    bytes_stored: int


@dataclass(frozen=True, slots=True)
class DaySeries:
    """One UTC day for the overview's charts; a day with nothing is all zeros."""

    day: str
    succeeded: int  #: images queued that day that have succeeded
    failed: int  #: images queued that day that have failed
    cost_usd: float  #: the known cost of the calls made that day
    latency_p50_ms: float | None  #: of the images queued that day (histogram bucket bound)
    latency_p95_ms: float | None


@dataclass(frozen=True, slots=True)
class ProviderHealth:
    """One provider over the last days, from the ledger's rollup (calls made in those UTC days)."""

    provider: str
    calls: int  #: every call, pending ones included
    ok: int
    success_rate: float | None  #: ok / calls that ended (pending ones are not counted yet)
    latency_p50_ms: float | None  #: of the calls that ended (histogram bucket bound)
    latency_p95_ms: float | None
    cost_usd: float  #: known costs
    accepted_images: int  #: images it made that succeeded, queued in those days
    cost_per_accepted_image: float | None  #: every call's known cost, failed ones too, per accepted image
    refusals: int
    last_error: str | None  #: of its latest call in those days that ended neither ok nor pending
    last_error_at: datetime | None


@dataclass(frozen=True, slots=True)
class CostTotals:
    """Spending today and this month (UTC) as a budget counts it: costs, plus the estimates that
    pending calls and calls of unknown price reserved — what ``Ledger.spending()`` says."""

    today_usd: float
    month_usd: float


def zero_counts() -> dict[Status, int]:
    return {status: 0 for status in Status}


class RollupReports:
    """Reports from the rollups, for one engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._deltas = engine.dialect.name == "postgresql"  #: only PostgreSQL's triggers write deltas
        self._latency_bounds: list[int] | None = None
        self._folded_at = -_FOLD_EVERY_SECONDS

    async def daily(self) -> list[DailyStats]:
        """Per provider, model, status and UTC day queued: counts, success rate, p50/p95 latency, cost, bytes."""
        rows = [row for row in await self._read(rollups.image_histograms(self.engine.dialect.name, deltas=self._deltas))
                if row[4] > 0]  # a group emptied by deletes is no group
        finished: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        for day, provider, model, status, images, *_ in rows:
            finished[(day, provider, model)][0] += int(images)
            finished[(day, provider, model)][1] += int(images) if status == Status.SUCCEEDED.value else 0
        bounds = await self._bounds()
        result = []
        for day, provider, model, status, images, stored, cost, unknown, listed in sorted(rows, key=lambda row: row[:4]):
            everything, succeeded = finished[(day, provider, model)]
            p50, p95 = rollups.histogram_percentiles(listed, bounds)
            result.append(DailyStats(
                provider=provider or None, model=model or None, status=Status(status), day=day, count=int(images),
                success_rate=round(succeeded / everything, 4) if everything else None,
                latency_p50_ms=p50, latency_p95_ms=p95, cost_usd=round(float(cost or 0.0), 6), unknown_cost_images=int(unknown or 0),
                bytes_stored=int(stored or 0)))
        return result

    async def series(self, days: int = 30) -> list[DaySeries]:
        """One entry per UTC day of the last ``days`` (today last), days with nothing as zeros."""
        dates = _last_days(days)
        since = dates[0]
        counts: dict[tuple[str, Status], int] = defaultdict(int)
        latency: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        for day, status, bucket, images, *_ in await self._read(
                rollups.image_totals("day", "status", "latency_bucket", since=since, deltas=self._deltas)):
            counts[(day, status)] += int(images)
            latency[day][bucket] += int(images)
        cost = {day: float(known) for day, _, known, _, _ in await self._read(
            rollups.attempt_totals("day", since=since, deltas=self._deltas))}
        bounds = await self._bounds()
        return [DaySeries(day=day, succeeded=counts[(day, Status.SUCCEEDED)], failed=counts[(day, Status.FAILED)],
                          cost_usd=round(cost.get(day, 0.0), 6),
                          latency_p50_ms=rollups.percentile(latency[day], bounds, 50),
                          latency_p95_ms=rollups.percentile(latency[day], bounds, 95))
                for day in dates]

    async def provider_health(self, days: int = 7) -> list[ProviderHealth]:
        """Each provider with calls (or made images) in the last ``days`` UTC days, by name."""
        since = _last_days(days)[0]
        outcomes: dict[str, dict[Outcome, int]] = defaultdict(lambda: defaultdict(int))
        latency: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        cost: dict[str, float] = defaultdict(float)
        for provider, outcome, bucket, calls, known, *_ in await self._read(
                rollups.attempt_totals("provider", "outcome", "latency_bucket", since=since, deltas=self._deltas)):
            outcomes[provider][Outcome(outcome)] += int(calls)
            latency[provider][bucket] += int(calls)  # a pending call sits in bucket -1: not counted
            cost[provider] += float(known)
        accepted = {provider: int(images) for provider, status, images, *_ in await self._read(
            rollups.image_totals("provider", "status", since=since, deltas=self._deltas)) if status == Status.SUCCEEDED}
        names = sorted({name for name, counts in outcomes.items() if sum(counts.values())}
                       | {name for name, count in accepted.items() if name and count})
        errors = await self._last_errors(names, datetime.fromisoformat(since))
        bounds = await self._bounds()
        result = []
        for name in names:
            counts = outcomes[name]
            calls, pending, ok = sum(counts.values()), counts[Outcome.PENDING], counts[Outcome.OK]
            made = accepted.get(name, 0)
            error, error_at = errors.get(name, (None, None))
            result.append(ProviderHealth(
                provider=name, calls=calls, ok=ok, success_rate=round(ok / (calls - pending), 4) if calls > pending else None,
                latency_p50_ms=rollups.percentile(latency[name], bounds, 50),
                latency_p95_ms=rollups.percentile(latency[name], bounds, 95), cost_usd=round(cost[name], 6),
                accepted_images=made, cost_per_accepted_image=round(cost[name] / made, 6) if made else None,
                refusals=counts[Outcome.REFUSED], last_error=error, last_error_at=error_at))
        return result

    async def _last_errors(self, providers: list[str], since: datetime) -> dict[str, tuple[str, datetime]]:
        # One statement; per provider, the (provider, started_at) index read backwards from now,
        # stopping at the first failed call: never more than that provider's calls of these days.
        if not providers:
            return {}
        attempt = GenerationAttempt
        latest = [select(attempt.provider, attempt.outcome, attempt.error, attempt.started_at)
                  .where(attempt.provider == name, attempt.started_at >= since,
                         attempt.outcome.not_in([Outcome.OK, Outcome.PENDING]))
                  .order_by(attempt.started_at.desc()).limit(1).subquery().select() for name in providers]
        async with self.engine.connect() as connection:
            rows = (await connection.execute(union_all(*latest))).all()
        return {provider: (error or Outcome(outcome).value, when) for provider, outcome, error, when in rows}

    async def status_totals(self) -> dict[Status, int]:
        """Images by status (what ``GROUP BY status`` over the images says), from the rollups."""
        counts = zero_counts()
        for status, images, *_ in await self._read(rollups.image_totals("status", deltas=self._deltas)):
            counts[status] += int(images)
        return counts

    async def cost_totals(self) -> CostTotals:
        """Spent or reserved today and this month (UTC), from the ledger's rollup."""
        today = utcnow().date().isoformat()
        rows = await self._read(rollups.attempt_totals("day", since=today[:8] + "01", deltas=self._deltas))
        month = sum(float(spent) for *_, spent in rows)
        spent_today = sum(float(spent) for day, *_, spent in rows if day == today)
        return CostTotals(today_usd=round(spent_today, 6), month_usd=round(month, 6))

    async def _read(self, query: Any) -> list[Any]:
        """Rows of a rollup query, after folding PostgreSQL's pending deltas (bounded, and at most
        once a second here: a page polling every few seconds must not turn each read into a write)."""
        if self.engine.dialect.name == "postgresql" and time.monotonic() - self._folded_at >= _FOLD_EVERY_SECONDS:
            async with self.engine.begin() as connection:
                await rollups.fold(connection)
            self._folded_at = time.monotonic()
        async with self.engine.connect() as connection:
            return list((await connection.execute(query)).all())

    async def _bounds(self) -> list[int]:
        if self._latency_bounds is None:  # fixed by the migration: read once
            async with self.engine.connect() as connection:
                self._latency_bounds = await rollups.latency_bounds(connection)
        return self._latency_bounds


def _last_days(days: int) -> list[str]:
    today = utcnow().date()
    return [(today - timedelta(days=back)).isoformat() for back in range(max(1, days) - 1, -1, -1)]
