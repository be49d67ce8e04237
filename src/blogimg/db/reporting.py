"""Everything blogimg reports: batch progress, totals, daily stats and metrics, as typed results.

One place, one definition of each number. Money always comes from the ledger
(``generation_attempts``), the record of every call, so the CLI, the API and /metrics agree; a
call of unknown price adds nothing to a sum and is counted as unknown instead.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from blogimg.db.failures import reconnecting
from blogimg.db.ledger import LedgerTotals, batch_totals
from blogimg.db.tables import Batch, BlogPost, GeneratedImage, GenerationAttempt
from blogimg.domain import Outcome, Status


@dataclass(frozen=True, slots=True)
class BatchProgress:
    """How a batch is doing: counts over exactly the images it names; the cost of its calls."""

    id: int
    counts: dict[Status, int]
    cost_usd: float
    image_ids: list[int]

    @property
    def done(self) -> bool:
        return self.counts[Status.QUEUED] == 0 and self.counts[Status.RUNNING] == 0


@dataclass(frozen=True, slots=True)
class BatchResults:
    """What a finished batch made: for a run's closing summary."""

    succeeded: int = 0
    failed: int = 0
    bytes_original: int = 0
    bytes_stored: int = 0
    failures: list[tuple[int, str, str]] = field(default_factory=list)  #: (image id, code, message)
    ledger: LedgerTotals = LedgerTotals(0, 0.0, 0)


@dataclass(frozen=True, slots=True)
class ProviderCalls:
    """Ledger totals of one provider (and, for metrics, one outcome)."""

    provider: str
    outcome: Outcome | None  #: None when summed over every outcome
    calls: int
    ok: int
    cost_usd: float
    unknown_cost_calls: int
    mean_latency_ms: int


@dataclass(frozen=True, slots=True)
class Totals:
    """The whole catalogue at a glance (``blogimg stats``)."""

    posts: int
    by_status: dict[Status, int]
    by_provider: list[ProviderCalls]
    bytes_original: int
    bytes_stored: int


@dataclass(frozen=True, slots=True)
class DailyStats:
    """Images of one provider, model and status made on one UTC day."""

    provider: str | None
    model: str | None
    status: Status
    day: str
    count: int
    success_rate: float | None  #: succeeded / all of this provider, model and day
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    cost_usd: float
    unknown_cost_images: int
    bytes_stored: int


_IDS_PER_QUERY = 10_000
_DayKey = tuple[str | None, str | None, Status, str]  #: provider, model, status, UTC day


def percentile(values: Sequence[int], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))])


def _zero_counts() -> dict[Status, int]:
    return {status: 0 for status in Status}


class Reporting:
    """Read-only queries that summarise the catalogue."""

    def __init__(self, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.engine, self.sessions = engine, sessions

    async def batch_progress(self, batch_id: int) -> BatchProgress | None:
        async with self.sessions() as session:
            batch = await session.get(Batch, batch_id)
            if batch is None:
                return None
            # Counts describe exactly the images the batch lists (made earlier ones count as
            # succeeded); old batches, from before every batch listed its images, by batch id.
            # Ids go in slices: SQLite allows some 32,000 parameters a statement.
            members = ([GeneratedImage.id.in_(batch.image_ids[start:start + _IDS_PER_QUERY])
                        for start in range(0, len(batch.image_ids), _IDS_PER_QUERY)]
                       if batch.image_ids is not None else [GeneratedImage.batch_id == batch_id])
            counts = _zero_counts()
            for member in members:
                for status, count in (await session.execute(
                        select(GeneratedImage.status, func.count()).where(member).group_by(GeneratedImage.status))):
                    counts[status] += count
            ledger = await batch_totals(session, batch_id, batch.created_at)
        image_ids = list(batch.image_ids or [])
        return BatchProgress(batch.id, counts, round(ledger.cost_usd, 6), image_ids)

    @reconnecting  # a read: a run that made every image must not end on a dropped connection
    async def batch_results(self, batch_id: int) -> BatchResults:
        async with self.sessions() as session:
            began = await session.scalar(select(Batch.created_at).where(Batch.id == batch_id))
            images = (await session.execute(
                select(GeneratedImage.id, GeneratedImage.status, GeneratedImage.error_code,
                       GeneratedImage.error_message, GeneratedImage.bytes_original, GeneratedImage.bytes_stored)
                .where(GeneratedImage.batch_id == batch_id).order_by(GeneratedImage.id))).all()
            ledger = await batch_totals(session, batch_id, began) if began else LedgerTotals(0, 0.0, 0)
        succeeded = [image for image in images if image[1] == Status.SUCCEEDED]
        failed = [image for image in images if image[1] == Status.FAILED]
        return BatchResults(
            succeeded=len(succeeded), failed=len(failed),
            bytes_original=sum(image[4] or 0 for image in succeeded),
            bytes_stored=sum(image[5] or 0 for image in succeeded),
            failures=[(image_id, code or "", message or "") for image_id, _, code, message, _, _ in failed],
            ledger=ledger)

    async def status_counts(self) -> dict[Status, int]:
        async with self.sessions() as session:
            return await _status_counts(session)

    async def provider_calls(self, *, by_outcome: bool = False) -> list[ProviderCalls]:
        """Ledger totals per provider (and per outcome with ``by_outcome``); a pending call's cost is unknown."""
        attempt = GenerationAttempt
        keys: list[InstrumentedAttribute[Any]] = [attempt.provider, attempt.outcome] if by_outcome else [attempt.provider]
        async with self.sessions() as session:
            rows = (await session.execute(
                select(*keys, func.count(),
                       func.sum(case((attempt.outcome == Outcome.OK, 1), else_=0)),
                       func.coalesce(func.sum(attempt.cost_usd), 0.0),
                       func.sum(case((attempt.cost_usd.is_(None), 1), else_=0)),
                       func.avg(attempt.latency_ms))
                .group_by(*keys).order_by(*keys))).all()
        result = []
        for row in rows:
            provider, outcome = (row[0], row[1]) if by_outcome else (row[0], None)
            calls, ok, cost, unknown, latency = row[-5:]
            result.append(ProviderCalls(provider, outcome, int(calls), int(ok or 0), float(cost), int(unknown or 0),
                                        round(latency or 0)))
        return result

    async def totals(self) -> Totals:
        async with self.sessions() as session:
            by_status = await _status_counts(session)
            original, stored = (await session.execute(
                select(func.coalesce(func.sum(GeneratedImage.bytes_original), 0),
                       func.coalesce(func.sum(GeneratedImage.bytes_stored), 0))
                .where(GeneratedImage.status == Status.SUCCEEDED))).one()
            posts = await session.scalar(select(func.count()).select_from(BlogPost))
        return Totals(int(posts or 0), by_status, await self.provider_calls(), int(original or 0),
                      int(stored or 0))

    async def daily(self) -> list[DailyStats]:
        """Per provider, model, status and day: counts, success rate, p50/p95 latency, cost, bytes."""
        image = GeneratedImage
        day = self._day(image.created_at)
        group = (image.provider, image.model, image.status, day)
        async with self.sessions() as session:
            rows = (await session.execute(
                select(*group, func.count(), func.coalesce(func.sum(image.bytes_stored), 0))
                .group_by(*group).order_by(day, image.provider, image.model, image.status))).all()
            # Cost from the ledger, by the group of the image each call was for.
            calls = (await session.execute(
                select(*group, func.coalesce(func.sum(GenerationAttempt.cost_usd), 0.0),
                       func.count(func.distinct(case(
                           ((GenerationAttempt.cost_usd.is_(None)) & (image.status == Status.SUCCEEDED), image.id)))))
                .join(image, image.id == GenerationAttempt.image_id).group_by(*group))).all()
            timings = (await session.execute(
                select(*group, image.latency_ms).where(image.latency_ms.is_not(None)))).all()
        latencies: dict[_DayKey, list[int]] = defaultdict(list)
        for provider, model, status, when, latency in timings:
            latencies[(provider, model, status, str(when))].append(latency or 0)
        cost = {(provider, model, status, str(when)): (float(total or 0.0), int(unknown or 0))
                for provider, model, status, when, total, unknown in calls}
        finished: dict[tuple[str | None, str | None, str], list[int]] = defaultdict(lambda: [0, 0])
        for provider, model, status, when, count, _ in rows:
            finished[(provider, model, str(when))][0] += count
            finished[(provider, model, str(when))][1] += count if status == Status.SUCCEEDED else 0
        result = []
        for provider, model, status, when, count, stored in rows:
            key = (provider, model, status, str(when))
            everything, succeeded = finished[(provider, model, str(when))]
            values = latencies.get(key, [])
            total, unknown = cost.get(key, (0.0, 0))
            result.append(DailyStats(
                provider=provider, model=model, status=status, day=str(when), count=count,
                success_rate=round(succeeded / everything, 4) if everything else None,
                latency_p50_ms=percentile(values, 0.5), latency_p95_ms=percentile(values, 0.95),
                cost_usd=round(total, 6), unknown_cost_images=unknown, bytes_stored=int(stored or 0)))
        return result

    def _day(self, column: InstrumentedAttribute[datetime]) -> ColumnElement[str]:
        # The UTC day as text, spelled per engine (SQLite has no DATE type to cast to).
        if self.engine.dialect.name == "sqlite":
            return func.strftime("%Y-%m-%d", column)
        return func.to_char(column, "YYYY-MM-DD")


async def _status_counts(session: AsyncSession) -> dict[Status, int]:
    counts = _zero_counts()
    counts.update((await session.execute(
        select(GeneratedImage.status, func.count()).group_by(GeneratedImage.status))).all())
    return counts
