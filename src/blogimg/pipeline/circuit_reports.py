"""A worker tells the catalogue its circuit breakers' states, so /metrics can say them.

Breakers live in each worker's memory (pipeline/breaker.py): an API node cannot see them. Every
``REPORT_SECONDS`` the worker upserts one row per provider (``worker_circuits``, migration 0012);
a scrape counts the rows updated within ``FRESH_SECONDS``, so a killed worker drops out by
itself. The same loop compacts ``metric_counts`` (db/metric_counts.py), keeping scrapes cheap.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from blogimg.db.failures import describe
from blogimg.db.metric_counts import compact, forget_circuits, report_circuits
from blogimg.pipeline.chain import ProviderChain

log = logging.getLogger(__name__)
REPORT_SECONDS = 10.0
#: A worker that has not reported for this long is taken for gone (three missed reports).
FRESH_SECONDS = 3 * REPORT_SECONDS + 5
#: Rows of workers gone this long are deleted by whichever worker reports next.
FORGET_AFTER = timedelta(days=1)


def circuit_states(chain: ProviderChain) -> dict[str, tuple[str, int]]:
    """{provider: (closed | open | half-open | paused, consecutive failures)} of this worker."""
    return {name: ("paused" if name in chain.paused else breaker.state.value, breaker.failures)
            for name, breaker in chain.breakers.items()}


async def report_loop(engine: AsyncEngine, owner: str, chain: ProviderChain, interval: float = REPORT_SECONDS) -> None:
    """Report until cancelled; a failed report is a warning, and the next one tries again."""
    forgotten = False
    while True:
        try:
            await report_circuits(engine, owner, circuit_states(chain))
            if not forgotten:  # once per worker: old rows of workers long gone
                await forget_circuits(engine, "", older_than=FORGET_AFTER)
                forgotten = True
            await compact(engine)
        except Exception as error:
            log.warning("could not report the circuit states: %s", describe(error))
        await asyncio.sleep(interval)
