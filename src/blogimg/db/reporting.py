"""Everything blogimg reports: batch progress, totals, daily stats and metrics, as typed results.

One place, one definition of each number. Money always comes from the ledger
(``generation_attempts``), the record of every call, so the CLI, the API and /metrics agree; a
call of unknown price adds nothing to a sum and is counted as unknown instead.

Daily stats, the day series, provider health and the overview's totals read the rollups
(db/rollups.py), kept by triggers in the transactions that change the rows: their cost does not
grow with the catalogue. Days are UTC days. Those reports live in db/rollup_reports.py; their
types are re-exported here, so every report's type is imported from this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from blogimg.db.failures import reconnecting
from blogimg.db.ledger import LedgerTotals, batch_totals
from blogimg.db.rollup_reports import CostTotals as CostTotals
from blogimg.db.rollup_reports import DailyStats as DailyStats
from blogimg.db.rollup_reports import DaySeries as DaySeries
from blogimg.db.rollup_reports import ProviderHealth as ProviderHealth
from blogimg.db.rollup_reports import RollupReports, zero_counts
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


_IDS_PER_QUERY = 10_000


class Reporting(RollupReports):
    """Read-only queries that summarise the catalogue (daily stats, series, provider health and the
    overview's totals come from the rollups: db/rollup_reports.py)."""

    def __init__(self, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
        super().__init__(engine)
        self.sessions = sessions

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
            counts = zero_counts()
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

async def _status_counts(session: AsyncSession) -> dict[Status, int]:
    counts = zero_counts()
    counts.update((await session.execute(
        select(GeneratedImage.status, func.count()).group_by(GeneratedImage.status))).all())
    return counts
