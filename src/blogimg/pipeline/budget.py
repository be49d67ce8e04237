"""Budgets: a provider call is made only if its estimated cost fits what is left.

Pure policy: what has been spent comes from the ledger (``db/ledger.py``), which also makes the
check and the reservation one serialized transaction. Windows are calendar days and months in
UTC.
"""

from __future__ import annotations

from dataclasses import dataclass

from blogimg.db.ledger import Spending
from blogimg.errors import BudgetExceededError

# Sums of float prices drift by a few ulps; a budget of exactly N images must admit N.
_SLACK_USD = 1e-9


@dataclass(frozen=True, slots=True)
class Budget:
    """Daily and monthly caps in US dollars; None means no cap."""

    daily_usd: float | None = None
    monthly_usd: float | None = None

    @property
    def enabled(self) -> bool:
        return self.daily_usd is not None or self.monthly_usd is not None

    def check(self, estimate: float | None, spending: Spending) -> None:
        """Raise BudgetExceededError unless a call costing ``estimate`` fits both caps."""
        if not self.enabled:
            return
        if estimate is None:
            raise BudgetExceededError("its price is unknown, so it cannot be checked against the budget")
        for cap, spent, label in ((self.daily_usd, spending.today, "daily"),
                                  (self.monthly_usd, spending.this_month, "monthly")):
            if cap is not None and spent + estimate > cap + _SLACK_USD:
                raise BudgetExceededError(
                    f"the {label} budget of ${cap:.2f} has ${max(cap - spent, 0):.4f} left; "
                    f"this call is estimated at ${estimate:.4f}")
