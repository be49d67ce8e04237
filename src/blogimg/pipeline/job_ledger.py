"""The chain's ledger for one job: a pending row (and budget reservation) before each call, its end after.

A row whose end could not be written (the database was out of reach just then) is remembered:
the chain keeps a paid result anyway, and :meth:`JobLedger.settle` writes the end once the job's
result is saved. Until then, or for good when that fails too (the process dies, the database
stays away), the row stays ``pending`` and its estimate counts against the budget: nothing
else settles pending rows, so the ledger errs towards money spent.
"""

from __future__ import annotations

import logging

from blogimg.db.failures import describe
from blogimg.db.ledger import Ledger
from blogimg.domain import AttemptRecord
from blogimg.pipeline.budget import Budget

log = logging.getLogger(__name__)


class JobLedger:
    """One job's calls in the ledger (the chain's ``Ledger``), with the budget they reserve from."""

    def __init__(self, ledger: Ledger, image_id: int, owner: str, budget: Budget | None) -> None:
        self.ledger, self.image_id, self.owner, self.budget = ledger, image_id, owner, budget
        self.unsettled: list[tuple[int, AttemptRecord]] = []  #: rows whose end is not written yet

    async def open(self, provider: str, model: str | None, number: int, estimate: float | None) -> int:
        return await self.ledger.open_attempt(
            self.image_id, owner=self.owner, provider=provider, model=model, number=number,
            estimate=estimate, budget=self.budget)

    async def close(self, handle: object, record: AttemptRecord) -> None:
        assert isinstance(handle, int)
        try:
            await self.ledger.close_attempt(handle, record)
        except Exception:
            self.unsettled.append((handle, record))
            raise

    async def settle(self) -> None:
        """Write the ends that could not be written before; what fails again stays pending."""
        unsettled, self.unsettled = self.unsettled, []
        for handle, record in unsettled:
            try:
                await self.ledger.close_attempt(handle, record)
            except Exception as error:
                log.warning("image %s: ledger row %s stays pending (%s %s): %s", self.image_id, handle,
                            record.provider, record.outcome.value, describe(error))
