"""What the alert rules measure (pipeline/alerting.py), each read bounded by an index.

The sliding-window measures (provider calls, imaging time) read the rows themselves, from an
index on their time column, and only the rows of the window: the rollups (db/rollups.py) count
by UTC day, far too coarse for a window of minutes, and a window that straddles midnight would
straddle two rollup rows anyway. A window of 15 minutes holds few rows next to the catalogue.

Stored bytes, which grow over all time, come from ``metric_counts`` (migration 0012's triggers:
masters and variants, the same total /metrics reports as ``blogimg_stored_bytes``); spending
from the ledger as a budget counts it (db/ledger.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from blogimg.db.metric_counts import read_counts, stored_by_format
from blogimg.db.tables import GeneratedImage, GenerationAttempt
from blogimg.domain import Outcome, Status

#: Outcomes that say nothing about a provider's health: a safety refusal is the prompt's doing,
#: and a pending call has not ended.
NOT_FAILURES = frozenset({Outcome.OK, Outcome.REFUSED})


@dataclass(slots=True)
class ProviderWindow:
    """One provider's calls that ended within the window."""

    calls: int = 0
    failures: int = 0  #: calls that ended neither ok nor refused
    latencies_ms: list[int] = field(default_factory=list)  #: sorted

    @property
    def failure_rate(self) -> float:
        return self.failures / self.calls if self.calls else 0.0


@dataclass(frozen=True, slots=True)
class QueueWait:
    """Jobs queued before a cutoff: how many, and since when the oldest waits."""

    jobs: int
    oldest: datetime | None


def percentile(sorted_values: Sequence[int], percent: int) -> float | None:
    """The nearest-rank ``percent`` of sorted values (the rollups' rank rule: floor(p·(n−1)/100 + ½))."""
    if not sorted_values:
        return None
    rank = (percent * (len(sorted_values) - 1) + 50) // 100
    return float(sorted_values[rank])


async def provider_calls(connection: AsyncConnection, since: datetime) -> dict[str, ProviderWindow]:
    """Calls started since ``since`` that have ended, by provider (the ``started_at`` index)."""
    attempt = GenerationAttempt
    rows = await connection.execute(
        select(attempt.provider, attempt.outcome, attempt.latency_ms)
        .where(attempt.started_at >= since, attempt.outcome != Outcome.PENDING))
    windows: dict[str, ProviderWindow] = defaultdict(ProviderWindow)
    for provider, outcome, latency in rows:
        window = windows[provider]
        window.calls += 1
        window.failures += outcome not in NOT_FAILURES
        window.latencies_ms.append(int(latency or 0))
    for window in windows.values():
        window.latencies_ms.sort()
    return dict(windows)


async def imaging_times(connection: AsyncConnection, since: datetime) -> list[int]:
    """Imaging time (decode, variants, encoding) of the images that succeeded since ``since``,
    sorted (the ``finished_at`` index of migration 0011)."""
    image = GeneratedImage
    rows = await connection.scalars(
        select(image.processing_ms).where(image.finished_at >= since, image.status == Status.SUCCEEDED,
                                          image.processing_ms.is_not(None)))
    return sorted(int(value or 0) for value in rows)


async def queued_before(connection: AsyncConnection, cutoff: datetime) -> QueueWait:
    """Jobs that have waited in the queue since before ``cutoff``.

    A queued row changes only when it is queued (enqueued, given back, retried), so its
    ``updated_at`` says since when it waits; the (status, …) index finds the queued rows.
    """
    image = GeneratedImage
    jobs, oldest = (await connection.execute(
        select(func.count(), func.min(image.updated_at))
        .where(image.status == Status.QUEUED, image.updated_at < cutoff))).one()
    return QueueWait(int(jobs), oldest)


async def stored_bytes(connection: AsyncConnection) -> int:
    """Storage used: every master the catalogue refers to plus every variant (a few dozen rows).

    Thumbnails are left out: their size is recorded nowhere (one small square each, at most
    ``thumbnail_size`` pixels a side).
    """
    return sum(count.total for count in stored_by_format(await read_counts(connection)).values())
