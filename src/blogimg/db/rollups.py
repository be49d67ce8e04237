"""Rollups: per-day aggregates of images and provider calls, read instead of scanning the rows.

Migration 0008 made the tables and the triggers that keep them, in the transaction of every write
to ``generated_images`` and ``generation_attempts`` (read its docstring for why triggers, and why
PostgreSQL appends deltas while SQLite upserts). This module reads them, folds PostgreSQL's
deltas in, and rebuilds them from the rows (``blogimg rebuild-rollups``).

- ``image_rollups``: images by UTC day of ``created_at``, provider, model, status and latency
  bucket: count, bytes, the known cost of every call made for them, and how many succeeded ones
  had a call of unknown cost.
- ``attempt_rollups``: ledger rows by UTC day of ``started_at``, provider, model, outcome and
  latency bucket: calls, known cost, calls of unknown cost, and what a budget counts (the
  cost, else the estimate a call reserved).

Latency percentiles come from the histogram: eight log-spaced buckets per doubling (whole
milliseconds below ~12 ms), so a percentile, reported as its bucket's upper bound, is at most
~9% above the exact one and never below it.

Folding (PostgreSQL): deltas move into the rollups in one statement per table (delete …
returning, grouped, upserted), at most ``FOLD_LIMIT`` at a time, by one folder at a time (an
advisory lock: a second folder skips). Readers fold first (at most once a second each), then read
rollups plus whatever deltas are left in one statement, so a reading is exact whether or not the
fold kept up. SQLite has no deltas: its readers read the rollups alone.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Row,
    Select,
    String,
    case,
    delete,
    func,
    insert,
    select,
    text,
    type_coerce,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from blogimg.db.tables import (
    AttemptRollup,
    AttemptRollupDelta,
    Base,
    GeneratedImage,
    GenerationAttempt,
    ImageRollup,
    ImageRollupDelta,
    LatencyBucket,
)
from blogimg.domain import Outcome, Status

#: Deltas folded by one reader at most; the rest are read as they are (exact, a little slower).
FOLD_LIMIT = 10_000
#: The advisory lock of the one folder ("blogroll"); the budget's and migrations' are others.
FOLD_LOCK_KEY = 0x626C6F67726F6C6C
NO_LATENCY = -1  #: the bucket of an image without a latency, and of a pending call

IMAGE_KEY = ("day", "provider", "model", "status", "latency_bucket")
IMAGE_MEASURES = ("images", "bytes_original", "bytes_stored", "cost_usd", "unknown_cost_images")
ATTEMPT_KEY = ("day", "provider", "model", "outcome", "latency_bucket")
ATTEMPT_MEASURES = ("calls", "cost_usd", "unknown_cost_calls", "spent_usd")


@dataclass(frozen=True, slots=True)
class RebuildReport:
    """What ``rebuild`` found: images and calls counted, rollup rows written."""

    images: int
    calls: int
    rows: int


def percentile(histogram: Mapping[int, int], bounds: Sequence[int], percent: int) -> float | None:
    """The nearest-rank ``percent`` of a latency histogram {bucket: count}, as its bucket's upper bound.

    Of n values the 0-based rank is floor(p·(n−1)/100 + ½), in integers; negative buckets (no
    latency) do not count. None when nothing has a latency.
    """
    total = sum(count for bucket, count in histogram.items() if bucket >= 0)
    if total <= 0:
        return None
    seen = 0
    for bucket in sorted(bucket for bucket in histogram if bucket >= 0):
        seen += histogram[bucket]
        if 100 * seen > percent * (total - 1) + 50:  # seen passes the rank
            return float(bounds[bucket])
    raise AssertionError("unreachable: the counts add up to the total")


async def latency_bounds(connection: AsyncConnection) -> list[int]:
    """Each bucket's upper bound in ms, by bucket number (the table migration 0008 filled)."""
    rows = await connection.execute(select(LatencyBucket.bucket, LatencyBucket.upper_ms).order_by(LatencyBucket.bucket))
    return [upper for _, upper in rows]


# Reading --------------------------------------------------------------------------------------


def image_totals(*group: str, since: str | None = None, deltas: bool = True) -> Select[Any]:
    """Image measures summed by the ``group`` columns (key names), rollups and pending deltas together
    (``deltas=False`` on SQLite, whose triggers write none)."""
    return _merged(ImageRollup, ImageRollupDelta if deltas else None, group, IMAGE_MEASURES, since)


def attempt_totals(*group: str, since: str | None = None, deltas: bool = True) -> Select[Any]:
    """Ledger measures summed by the ``group`` columns, rollups and pending deltas together."""
    return _merged(AttemptRollup, AttemptRollupDelta if deltas else None, group, ATTEMPT_MEASURES, since)


def image_histograms(dialect: str, since: str | None = None, deltas: bool = True) -> Select[Any]:
    """Image measures by day, provider, model and status, each group's latency histogram in one text
    column ("bucket:count,…", buckets with a latency only).

    The database adds up the ~30 bucket rows of a group, so Python reads one row per group instead
    of one per bucket: at 1M images (some 5,500 rollup rows) that is most of the stats endpoint's time.
    """
    # One GROUP BY over rollups and pending deltas together: a bucket may then be listed twice, once
    # with a delta's negative count, which histogram_percentiles allows for (a second, per-bucket
    # GROUP BY first doubled PostgreSQL's time).
    merged = _unioned(ImageRollup, ImageRollupDelta if deltas else None, IMAGE_KEY, IMAGE_MEASURES, since).subquery()
    pair = (type_coerce(merged.c.latency_bucket, String) + ":" + type_coerce(merged.c.images, String)
            if dialect == "sqlite" else
            func.cast(merged.c.latency_bucket, String) + ":" + func.cast(merged.c.images, String))
    listed = case((merged.c.latency_bucket >= 0, pair))  # NULL for "no latency": the aggregate skips it
    histogram = (func.group_concat(listed, ",") if dialect == "sqlite" else func.string_agg(listed, ","))
    keys = [type_coerce(merged.c[name], String).label(name) if name == "status" else merged.c[name]
            for name in IMAGE_KEY[:-1]]
    return (select(*keys, func.sum(merged.c.images), func.sum(merged.c.bytes_stored), func.sum(merged.c.cost_usd),
                   func.sum(merged.c.unknown_cost_images), histogram)
            .group_by(*[merged.c[name] for name in IMAGE_KEY[:-1]]))


def histogram_percentiles(listed: str | None, bounds: Sequence[int],
                          percents: Sequence[int] = (50, 95)) -> list[float | None]:
    """``percentile`` of each of ``percents`` for ``image_histograms``' text column.

    This runs once per group of the stats endpoint, so the work is done by built-ins: the numbers
    are read in C, the running sums by ``accumulate`` and the rank found by ``bisect``.
    """
    numbers = list(map(int, listed.replace(":", ",").split(","))) if listed else []
    buckets, counts = numbers[0::2], numbers[1::2]
    if len(set(buckets)) != len(buckets):  # a rollup row and its pending deltas: add them up
        summed: dict[int, int] = {}
        for bucket, count in zip(buckets, counts, strict=True):
            summed[bucket] = summed.get(bucket, 0) + count
        buckets, counts = list(summed), list(summed.values())
    if buckets != sorted(buckets):  # the database lists them in key order, but need not
        order = sorted(zip(buckets, counts, strict=True))
        buckets, counts = [bucket for bucket, _ in order], [count for _, count in order]
    running = list(accumulate(counts))  # never falls: net counts are not negative
    total = running[-1] if running else 0
    if total <= 0:
        return [None for _ in percents]
    # percentile()'s rank rule: the first bucket whose running sum s has 100·s > p·(n−1) + 50.
    return [float(bounds[buckets[bisect_right(running, (percent * (total - 1) + 50) // 100)]]) for percent in percents]


def _unioned(rollup: type[Base], delta: type[Base] | None, group: Sequence[str], measures: Sequence[str],
             since: str | None, status_as_text: bool = False) -> Select[Any] | CompoundSelect[Any]:
    parts = []
    for table in (rollup.__table__, *([delta.__table__] if delta is not None else [])):
        columns = [type_coerce(table.c[name], String).label(name) if status_as_text and name == "status"
                   else table.c[name] for name in (*group, *measures)]
        part = select(*columns)
        if since is not None:
            part = part.where(table.c.day >= since)
        parts.append(part)
    return union_all(*parts) if len(parts) > 1 else parts[0]


def _merged(rollup: type[Base], delta: type[Base] | None, group: Sequence[str], measures: Sequence[str],
            since: str | None) -> Select[Any]:
    both = _unioned(rollup, delta, group, measures, since).subquery()
    keys = [both.c[name] for name in group]
    return select(*keys, *[func.sum(both.c[name]).label(name) for name in measures]).group_by(*keys)


async def fold(connection: AsyncConnection, limit: int = FOLD_LIMIT) -> int:
    """Move up to ``limit`` deltas of each table into the rollups; how many moved (0 on SQLite, or
    when another folder holds the lock). Run it in a transaction of its own: it commits with it."""
    if connection.dialect.name != "postgresql":
        return 0  # SQLite's triggers write the rollups themselves
    if not await connection.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": FOLD_LOCK_KEY}):
        return 0
    moved = 0
    for rollup, delta, key, measures in ((ImageRollup, ImageRollupDelta, IMAGE_KEY, IMAGE_MEASURES),
                                         (AttemptRollup, AttemptRollupDelta, ATTEMPT_KEY, ATTEMPT_MEASURES)):
        into, source = rollup.__tablename__, delta.__tablename__
        columns, keys = ", ".join((*key, *measures)), ", ".join(key)
        # One statement, so no delta is deleted that was not added (READ COMMITTED gives each
        # statement its own snapshot). Deltas not yet committed are invisible and stay for later.
        moved += int(await connection.scalar(text(
            f"WITH moved AS (DELETE FROM {source} WHERE id IN (SELECT id FROM {source} ORDER BY id LIMIT :limit) "
            f"RETURNING {columns}), "
            f"folded AS (INSERT INTO {into} ({columns}) SELECT {keys}, "
            + ", ".join(f"sum({name})" for name in measures)
            + f" FROM moved GROUP BY {keys} ON CONFLICT ({keys}) DO UPDATE SET "
            + ", ".join(f"{name} = {into}.{name} + excluded.{name}" for name in measures)
            + " RETURNING 1) SELECT count(*) FROM moved"), {"limit": limit}) or 0)
    return moved


async def fold_all(engine: AsyncEngine, limit: int = FOLD_LIMIT) -> int:
    """Fold until no deltas are left (or another folder is at work); how many moved."""
    total = 0
    while True:
        async with engine.begin() as connection:
            moved = await fold(connection, limit)
        total += moved
        if moved < limit:
            return total


# Rebuilding -----------------------------------------------------------------------------------


def day_of(dialect: str, column: Any) -> ColumnElement[str]:
    """The UTC day of a naive UTC timestamp as 'YYYY-MM-DD', as the triggers spell it."""
    if dialect == "sqlite":
        return func.strftime("%Y-%m-%d", column)
    return func.to_char(column, "YYYY-MM-DD")


def _bucket(latency: Any) -> ColumnElement[int]:
    return func.coalesce(select(func.min(LatencyBucket.bucket)).where(LatencyBucket.upper_ms >= latency)
                         .scalar_subquery(), NO_LATENCY)


def recomputed_images(dialect: str) -> Select[Any]:
    """``image_rollups`` as the rows say it must be: (key…, measures…) per key, from a full scan."""
    attempt, image = GenerationAttempt, GeneratedImage
    calls = (select(attempt.image_id, func.sum(attempt.cost_usd).label("cost"),
                    func.sum(case((attempt.cost_usd.is_(None), 1), else_=0)).label("unknown"))
             .group_by(attempt.image_id).subquery())
    rows = (select(day_of(dialect, image.created_at).label("day"), func.coalesce(image.provider, "").label("provider"),
                   func.coalesce(image.model, "").label("model"), image.status.label("status"),
                   _bucket(image.latency_ms).label("latency_bucket"),
                   func.coalesce(image.bytes_original, 0).label("bytes_original"),
                   func.coalesce(image.bytes_stored, 0).label("bytes_stored"),
                   func.coalesce(calls.c.cost, 0.0).label("cost_usd"),
                   case(((image.status == Status.SUCCEEDED) & (calls.c.unknown > 0), 1), else_=0).label("unknown"))
            .outerjoin(calls, calls.c.image_id == image.id).subquery())
    keys = [rows.c[name] for name in IMAGE_KEY]
    return select(*keys, func.count().label("images"), func.sum(rows.c.bytes_original), func.sum(rows.c.bytes_stored),
                  func.sum(rows.c.cost_usd), func.sum(rows.c.unknown)).group_by(*keys)


def recomputed_attempts(dialect: str) -> Select[Any]:
    """``attempt_rollups`` as the ledger says it must be, from a full scan."""
    attempt = GenerationAttempt
    unpriced = (attempt.outcome == Outcome.PENDING) | attempt.cost_usd.is_(None)
    rows = (select(day_of(dialect, attempt.started_at).label("day"), attempt.provider.label("provider"),
                   func.coalesce(attempt.model, "").label("model"), attempt.outcome.label("outcome"),
                   case((attempt.outcome == Outcome.PENDING, NO_LATENCY), else_=_bucket(attempt.latency_ms))
                   .label("latency_bucket"),
                   func.coalesce(attempt.cost_usd, 0.0).label("cost_usd"),
                   case((attempt.cost_usd.is_(None), 1), else_=0).label("unknown"),
                   case((unpriced, func.coalesce(attempt.estimated_cost_usd, 0.0)), else_=attempt.cost_usd)
                   .label("spent"))
            .subquery())
    keys = [rows.c[name] for name in ATTEMPT_KEY]
    return select(*keys, func.count().label("calls"), func.sum(rows.c.cost_usd), func.sum(rows.c.unknown),
                  func.sum(rows.c.spent)).group_by(*keys)


async def rebuild(engine: AsyncEngine) -> RebuildReport:
    """Recompute every rollup from the rows, in one transaction that writers wait for."""
    dialect = engine.dialect.name
    async with engine.begin() as connection:
        if dialect == "postgresql":
            # Writers wait (readers do not) while the tables are recomputed, so no change is
            # counted twice or lost between the delete and the insert; folders wait too.
            await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": FOLD_LOCK_KEY})
            await connection.execute(text("LOCK TABLE generated_images, generation_attempts IN SHARE MODE"))
        # (SQLite: every transaction here begins IMMEDIATE, holding the one write lock.)
        for table in (ImageRollupDelta, ImageRollup, AttemptRollupDelta, AttemptRollup):
            await connection.execute(delete(table))
        await connection.execute(insert(ImageRollup).from_select([*IMAGE_KEY, *IMAGE_MEASURES],
                                                                 recomputed_images(dialect)))
        await connection.execute(insert(AttemptRollup).from_select([*ATTEMPT_KEY, *ATTEMPT_MEASURES],
                                                                   recomputed_attempts(dialect)))
        images, image_rows = (await connection.execute(
            select(func.coalesce(func.sum(ImageRollup.images), 0), func.count()))).one()
        calls, call_rows = (await connection.execute(
            select(func.coalesce(func.sum(AttemptRollup.calls), 0), func.count()))).one()
    return RebuildReport(int(images), int(calls), int(image_rows) + int(call_rows))


def nonzero(rows: Sequence[Row[Any]]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """Rows as {key: measures}, leaving out keys whose every measure is zero (what a row emptied by
    deletes leaves); costs rounded to the micro-dollar, as sums of floats differ in the last bits."""
    found: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for row in rows:
        key = tuple(row[:5])
        values: list[Any] = list(row[5:])
        measures = tuple(round(value, 6) if isinstance(value, float) else int(value) for value in values)
        if any(measures):
            found[key] = measures
    return found

