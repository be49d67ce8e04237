"""The cost ledger (``generation_attempts``): one row per provider call, and budget reservations.

A call reserves its estimate by writing its ledger row *before* it is made (outcome
``pending``, ``estimated_cost_usd`` set), in the same transaction that checked the budget; that
transaction is serialized (SQLite's BEGIN IMMEDIATE, a PostgreSQL advisory lock), so two
workers cannot both squeeze into the last dollar. A call that dies half-way keeps its estimate
counted: we cannot know it was not billed. Spending is read from these rows, so every process
and machine sharing the catalogue shares one budget. What the limits are is policy
(``pipeline/budget.py``); this module only measures and records.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import ColumnElement, case, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from blogimg.db.failures import reconnecting, retrying
from blogimg.db.tables import GeneratedImage, GenerationAttempt, utcnow
from blogimg.domain import AttemptRecord, Outcome

_ADVISORY_LOCK_KEY = 0x626C6F67  # "blog": one lock for every budget check on PostgreSQL


@dataclass(frozen=True, slots=True)
class Spending:
    """Dollars spent or reserved in the current UTC day and month."""

    today: float
    this_month: float


class SpendingPolicy(Protocol):
    """Decides whether a call may be made, given what has been spent (``Budget`` is one)."""

    @property
    def enabled(self) -> bool: ...

    def check(self, estimate: float | None, spending: Spending) -> None:
        """Raise BudgetExceededError to forbid the call."""
        ...


@dataclass(frozen=True, slots=True)
class LedgerTotals:
    """Provider calls of a set of jobs: how many, their known cost, and how many of unknown cost."""

    calls: int
    cost_usd: float
    unknown_cost_calls: int


def spent_amount() -> ColumnElement[float]:
    """What one ledger row counts against a budget: its cost, else the estimate it reserved."""
    attempt = GenerationAttempt
    return case(
        ((attempt.outcome == Outcome.PENDING) | attempt.cost_usd.is_(None),
         func.coalesce(attempt.estimated_cost_usd, 0.0)),
        else_=attempt.cost_usd,
    )


async def spending(session: AsyncSession, now: datetime) -> Spending:
    """Spent or reserved since the start of ``now``'s UTC day and month, in one query."""
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month_start = day_start.replace(day=1)
    amount = spent_amount()
    today, month = (await session.execute(
        select(func.coalesce(func.sum(case((GenerationAttempt.started_at >= day_start, amount), else_=0.0)), 0.0),
               func.coalesce(func.sum(amount), 0.0))
        .where(GenerationAttempt.started_at >= month_start))).one()
    return Spending(float(today or 0.0), float(month or 0.0))


class Ledger:
    """Opens (and reserves) and closes ledger rows; totals for a batch."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def open_attempt(self, image_id: int, *, owner: str, provider: str, model: str | None,
                           number: int, estimate: float | None, budget: SpendingPolicy | None = None) -> int:
        """Write a ``pending`` row for a call about to be made; return its id.

        With a budget, the check runs in the same serialized transaction, so the row is the
        reservation: BudgetExceededError leaves nothing behind, and no call may be made.
        A lost connection is retried; a repeat first looks for the row its first try may have
        committed unseen, so one call never reserves its estimate twice.
        """
        began = utcnow()

        async def reserve(try_number: int) -> int:
            async with self.sessions.begin() as session:
                if try_number > 1 and (earlier := await session.scalar(select(GenerationAttempt.id).where(
                        GenerationAttempt.image_id == image_id, GenerationAttempt.attempt == number,
                        GenerationAttempt.provider == provider, GenerationAttempt.lease_owner == owner,
                        GenerationAttempt.outcome == Outcome.PENDING, GenerationAttempt.started_at >= began))):
                    return earlier
                if budget is not None and budget.enabled:
                    if session.get_bind().dialect.name == "postgresql":
                        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})
                    budget.check(estimate, await spending(session, utcnow()))
                row = GenerationAttempt(
                    image_id=image_id, attempt=number, provider=provider, model=model,
                    outcome=Outcome.PENDING, latency_ms=0, cost_usd=None, estimated_cost_usd=estimate,
                    lease_owner=owner,
                )
                session.add(row)
                await session.flush()
                return row.id

        return await retrying(reserve)

    @reconnecting  # setting the same values twice is harmless
    async def close_attempt(self, attempt_id: int, record: AttemptRecord) -> None:
        """Record how the call ended and what it cost (NULL when the price is unknown)."""
        async with self.sessions.begin() as session:
            await session.execute(
                update(GenerationAttempt).where(GenerationAttempt.id == attempt_id).values(
                    model=record.model, outcome=record.outcome, http_status=record.http_status,
                    latency_ms=record.latency_ms, cost_usd=record.cost_usd, error=record.error,
                )
            )

    async def spending(self) -> Spending:
        async with self.sessions() as session:
            return await spending(session, utcnow())


async def batch_totals(session: AsyncSession, batch_id: int, since: datetime) -> LedgerTotals:
    """Calls made for a batch's jobs since the batch began.

    A job carried over from a killed run keeps its earlier calls in the ledger, but they belong
    to that run; images already made before the batch had no calls in it.
    """
    calls, cost, unknown = (await session.execute(
        select(func.count(GenerationAttempt.id),
               func.coalesce(func.sum(GenerationAttempt.cost_usd), 0.0),
               func.sum(case((GenerationAttempt.cost_usd.is_(None), 1), else_=0)))
        .join(GeneratedImage, GeneratedImage.id == GenerationAttempt.image_id)
        .where(GeneratedImage.batch_id == batch_id, GenerationAttempt.started_at >= since))).one()
    return LedgerTotals(int(calls), float(cost), int(unknown or 0))
