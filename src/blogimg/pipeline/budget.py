"""Budgets: a provider call is made only if its estimated cost fits what is left.

Spending is read from the ledger itself (``generation_attempts``), so every process and machine
sharing the catalogue shares one budget. A call reserves its estimate by writing its ledger row
*before* it is made (outcome ``pending``, ``estimated_cost_usd`` set), in the same transaction
that checked the budget; that transaction is serialized (SQLite's BEGIN IMMEDIATE, a PostgreSQL
advisory lock), so two workers cannot both squeeze into the last dollar. A call that dies
half-way keeps its estimate counted: we cannot know it was not billed.

Windows are calendar days and months in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from blogimg.db.tables import GenerationAttempt
from blogimg.errors import BudgetExceededError

# Sums of float prices drift by a few ulps; a budget of exactly N images must admit N.
_SLACK_USD = 1e-9
_ADVISORY_LOCK_KEY = 0x626C6F67  # "blog": one lock for every budget check on PostgreSQL
PENDING = "pending"


@dataclass(frozen=True, slots=True)
class Budget:
    """Daily and monthly caps in US dollars; None means no cap."""

    daily_usd: float | None = None
    monthly_usd: float | None = None

    @property
    def enabled(self) -> bool:
        return self.daily_usd is not None or self.monthly_usd is not None

    async def check(self, session: AsyncSession, estimate: float | None, now: datetime) -> None:
        """Raise BudgetExceededError unless a call costing ``estimate`` fits both caps.

        Must run inside the transaction that then writes the call's pending ledger row.
        """
        if not self.enabled:
            return
        if estimate is None:
            raise BudgetExceededError("its price is unknown, so it cannot be checked against the budget")
        if session.bind.dialect.name == "postgresql":
            await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})
        day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        month_start = day_start.replace(day=1)
        for cap, since, label in ((self.daily_usd, day_start, "daily"),
                                  (self.monthly_usd, month_start, "monthly")):
            if cap is None:
                continue
            spent = await spent_since(session, since)
            if spent + estimate > cap + _SLACK_USD:
                raise BudgetExceededError(
                    f"the {label} budget of ${cap:.2f} has ${max(cap - spent, 0):.4f} left; "
                    f"this call is estimated at ${estimate:.4f}")


async def spent_since(session: AsyncSession, since: datetime) -> float:
    """Dollars spent or reserved since ``since``: actual costs, else the estimate reserved."""
    attempt = GenerationAttempt
    amount = case(
        ((attempt.outcome == PENDING) | attempt.cost_usd.is_(None),
         func.coalesce(attempt.estimated_cost_usd, 0.0)),
        else_=attempt.cost_usd,
    )
    total = await session.scalar(select(func.coalesce(func.sum(amount), 0.0)).where(attempt.started_at >= since))
    return float(total or 0.0)
