"""Counters and worker states that /metrics reads: migration 0012's ``metric_counts`` and
``worker_circuits`` (read its docstring for why they exist and who writes them).

``metric_counts`` only grows by inserts (the triggers); :func:`compact` folds its rows into one
per (metric, label), so a scrape sums a few dozen rows however many images there are.
``worker_circuits`` holds each worker's breaker states; :func:`live_circuits` counts only the
rows of workers that reported lately, so a worker that died stops counting without any cleanup.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    String,
    delete,
    func,
    insert,
    select,
    table,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from blogimg.db.tables import utcnow

#: The advisory lock of the one compactor on PostgreSQL ("blogmetc"); the rollups' folder has its own.
COMPACT_LOCK_KEY = 0x626C6F676D657463

metric_counts = table("metric_counts", Column("id", Integer), Column("metric", String), Column("label", String),
                      Column("count", Integer), Column("total", Integer))
worker_circuits = table("worker_circuits", Column("owner", String), Column("provider", String),
                        Column("state", String), Column("failures", Integer), Column("updated_at", DateTime))


@dataclass(frozen=True, slots=True)
class Count:
    """One (metric, label): how many, and their total (bytes, milliseconds)."""

    count: int
    total: int


async def read_counts(connection: AsyncConnection) -> dict[str, dict[str, Count]]:
    """{metric: {label: Count}}, every row of each summed (compacted or not: the same answer)."""
    rows = await connection.execute(
        select(metric_counts.c.metric, metric_counts.c.label, func.sum(metric_counts.c.count),
               func.sum(metric_counts.c.total)).group_by(metric_counts.c.metric, metric_counts.c.label))
    found: dict[str, dict[str, Count]] = {}
    for metric, label, count, total in rows:
        found.setdefault(metric, {})[label] = Count(int(count or 0), int(total or 0))
    return found


def stored_by_format(counts: Mapping[str, Mapping[str, Count]]) -> dict[str, Count]:
    """Storage used by format, from :func:`read_counts`: variants by theirs, every master as ``master``.

    This is what the storage alert and /metrics count (thumbnails are not in it: their size is
    recorded nowhere).
    """
    stored = dict(counts.get("stored_bytes", {}))
    masters = counts.get("masters", {}).values()
    stored["master"] = Count(sum(count.count for count in masters), sum(count.total for count in masters))
    return stored


async def compact(engine: AsyncEngine) -> int:
    """Fold ``metric_counts`` into one row per (metric, label); how many rows went (0 when another
    process is compacting). Sums are unchanged at every moment a reader could look."""
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            if not await connection.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": COMPACT_LOCK_KEY}):
                return 0
            # Already one row per (metric, label): nothing to fold, and rewriting every row every few
            # seconds in every worker would only churn the table.
            rows, groups = (await connection.execute(text(
                "SELECT count(*), count(DISTINCT (metric, label)) FROM metric_counts"))).one()
            if int(rows) == int(groups):
                return 0
            # One statement, one snapshot: no row is deleted that is not added back (a row another
            # transaction commits meanwhile is not seen, and stays for the next time).
            return int(await connection.scalar(text(
                "WITH moved AS (DELETE FROM metric_counts RETURNING metric, label, count, total), "
                "added AS (INSERT INTO metric_counts (metric, label, count, total) "
                "SELECT metric, label, sum(count), sum(total) FROM moved GROUP BY metric, label RETURNING 1) "
                "SELECT count(*) FROM moved")) or 0)
        # SQLite: this transaction holds the one write lock, so no trigger adds a row meanwhile.
        upto = await connection.scalar(select(func.max(metric_counts.c.id)))
        if upto is None:
            return 0
        rows = (await connection.execute(
            select(metric_counts.c.metric, metric_counts.c.label, func.sum(metric_counts.c.count),
                   func.sum(metric_counts.c.total), func.count())
            .where(metric_counts.c.id <= upto).group_by(metric_counts.c.metric, metric_counts.c.label))).all()
        if sum(int(row[4]) for row in rows) == len(rows):
            return 0  # already one row each
        await connection.execute(delete(metric_counts).where(metric_counts.c.id <= upto))
        await connection.execute(insert(metric_counts), [
            {"metric": metric, "label": label, "count": int(count), "total": int(total)}
            for metric, label, count, total, _ in rows])
        return sum(int(row[4]) for row in rows)


async def report_circuits(engine: AsyncEngine, owner: str, states: Mapping[str, tuple[str, int]]) -> None:
    """Upsert this worker's {provider: (state, consecutive failures)}; every row's time is now."""
    now = utcnow()
    async with engine.begin() as connection:
        for provider, (state, failures) in states.items():
            changed = await connection.execute(
                update(worker_circuits)
                .where(worker_circuits.c.owner == owner, worker_circuits.c.provider == provider)
                .values(state=state, failures=failures, updated_at=now))
            if not changed.rowcount:  # only this worker writes its own rows: no race to insert
                await connection.execute(insert(worker_circuits).values(
                    owner=owner, provider=provider, state=state, failures=failures, updated_at=now))


async def forget_circuits(engine: AsyncEngine, owner: str, *, older_than: timedelta | None = None) -> None:
    """Delete ``owner``'s rows (a worker that stops), and any row not updated for ``older_than``."""
    async with engine.begin() as connection:
        await connection.execute(delete(worker_circuits).where(worker_circuits.c.owner == owner))
        if older_than is not None:
            await connection.execute(delete(worker_circuits).where(worker_circuits.c.updated_at < utcnow() - older_than))


async def live_circuits(connection: AsyncConnection, fresh_for: timedelta) -> dict[tuple[str, str], int]:
    """{(provider, state): workers} over the workers that reported within ``fresh_for``."""
    rows = await connection.execute(
        select(worker_circuits.c.provider, worker_circuits.c.state, func.count())
        .where(worker_circuits.c.updated_at >= utcnow() - fresh_for)
        .group_by(worker_circuits.c.provider, worker_circuits.c.state))
    return {(provider, state): int(count) for provider, state, count in rows}
