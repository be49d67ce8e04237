"""Analytics: spend by day, month or provider, cost per accepted image, regeneration, storage by
format and ratings per provider and model (``GET /api/analytics``, ``blogimg stats --by``).

What each part costs to read:

- Spend, accepted images and regeneration come from the daily rollups (db/rollups.py), never the
  rows: their cost grows with days × providers × models × outcomes, not with the catalogue.
- Storage by format and the format distribution read ``metric_counts`` (migration 0012's
  triggers: masters by their format with the provider's original bytes, variants by theirs), a
  few dozen rows however many images there are. Ratings read the images (one pass, rated ones
  grouped): a single aggregate scan, 0.03 s on SQLite at 100,000 images (spend: 4 ms).

Definitions:

- *Accepted image*: an image that succeeded (by the UTC day it was queued, for day and month).
- *Cost per accepted image*: every call's known cost (failed calls too) over the accepted images.
- *Regeneration rate*: ok provider calls that did not become the image kept, per accepted image:
  ``(ok calls − accepted images) / accepted images``, at least 0. Each accepted image has exactly
  one ok call that made it; any further ok call is an image made again — re-made after its master
  was lost, made and then rejected by imaging, or made by a worker whose lease ran out. Failed
  calls that were retried are not regenerations; they show in ``calls_per_accepted_image``.
  By day, a call is counted on the day it was made and an image on the day it was queued.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from sqlalchemy import func, select

from blogimg.db import rollups
from blogimg.db.engine import reader
from blogimg.db.metric_counts import read_counts
from blogimg.db.rollup_reports import RollupReports
from blogimg.db.tables import GeneratedImage, utcnow
from blogimg.domain import Outcome, Status

Grouping = Literal["day", "month", "provider"]
GROUPINGS: tuple[Grouping, ...] = ("day", "month", "provider")
NO_PROVIDER = "(none)"  #: the group of images no provider made (queued, or failed before any call)


@dataclass(frozen=True, slots=True)
class SpendRow:
    """One day, month or provider: calls, their cost and the images they were for."""

    key: str  #: 'YYYY-MM-DD', 'YYYY-MM' or a provider's name
    calls: int
    ok_calls: int
    cost_usd: float  #: known costs
    unknown_cost_calls: int
    accepted_images: int
    failed_images: int
    cost_per_accepted_image: float | None
    calls_per_accepted_image: float | None
    regeneration_rate: float | None


@dataclass(frozen=True, slots=True)
class FormatStorage:
    """Files of one format: how many, their bytes, and (masters only) the bytes the provider sent."""

    role: Literal["master", "variant"]
    format: str
    files: int
    bytes_stored: int
    bytes_original: int | None  #: masters: the provider's files; variants have no original of their own
    bytes_saved: int | None  #: masters: original − stored


@dataclass(frozen=True, slots=True)
class RatingRow:
    """Ratings (1–5) of the images one provider and model made."""

    provider: str
    model: str
    rated_images: int
    mean_rating: float
    counts: dict[int, int]  #: rating → images


@dataclass(frozen=True, slots=True)
class AnalyticsReport:
    """Everything ``GET /api/analytics`` answers."""

    grouping: Grouping
    since: str | None  #: the first UTC day counted, None for all time
    rows: list[SpendRow]
    total: SpendRow
    storage: list[FormatStorage] = field(default_factory=list)
    ratings: list[RatingRow] = field(default_factory=list)


class Analytics(RollupReports):
    """The reports of this module, for one engine."""

    async def spend(self, grouping: Grouping, days: int | None = None) -> tuple[list[SpendRow], SpendRow]:
        """Rows by ``grouping`` (days and months oldest first, providers by name) and their total."""
        since = first_day(days)
        key = "provider" if grouping == "provider" else "day"
        calls: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0.0, 0])  # calls, ok, cost, unknown
        for name, outcome, count, known, unknown, _ in await self._read(
                rollups.attempt_totals(key, "outcome", since=since, deltas=self._deltas)):
            group = _group(grouping, name)
            calls[group][0] += int(count)
            calls[group][1] += int(count) if outcome == Outcome.OK else 0
            calls[group][2] += float(known or 0.0)
            calls[group][3] += int(unknown or 0)
        images: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # accepted, failed
        for name, status, count, *_ in await self._read(
                rollups.image_totals(key, "status", since=since, deltas=self._deltas)):
            group = _group(grouping, name)
            images[group][0] += int(count) if status == Status.SUCCEEDED else 0
            images[group][1] += int(count) if status == Status.FAILED else 0
        keys = sorted(group for group in {*calls, *images}
                      if any(calls[group][:2]) or any(images[group]))  # a group emptied by deletes is none
        rows = [_row(group, calls[group], images[group]) for group in keys]
        total = _row("total", [sum(calls[group][index] for group in keys) for index in range(4)],
                     [sum(images[group][index] for group in keys) for index in range(2)])
        return rows, total

    async def storage_by_format(self) -> list[FormatStorage]:
        """Masters by their format (every image whose row refers to one) and variants by theirs,
        from ``metric_counts`` (a few dozen rows); formats with no file left are not listed."""
        async with reader(self.engine).connect() as connection:
            counts = await read_counts(connection)
        masters, originals = counts.get("masters", {}), counts.get("masters_original", {})
        return ([FormatStorage("master", name, stored.count, stored.total, originals[name].total,
                               originals[name].total - stored.total)
                 for name, stored in sorted(masters.items()) if stored.count and name in originals]
                + [FormatStorage("variant", name, stored.count, stored.total, None, None)
                   for name, stored in sorted(counts.get("stored_bytes", {}).items()) if stored.count])

    async def ratings(self) -> list[RatingRow]:
        """Rated images by the provider and model that made them, then by rating: one scan."""
        image = GeneratedImage
        async with reader(self.engine).connect() as connection:
            rows = (await connection.execute(
                select(func.coalesce(image.provider, ""), func.coalesce(image.model, ""), image.rating, func.count())
                .where(image.rating.is_not(None))
                .group_by(image.provider, image.model, image.rating))).all()
        grouped: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
        for provider, model, rating, count in rows:
            counts = grouped[(provider or NO_PROVIDER, model)]
            counts[int(rating or 0)] = counts.get(int(rating or 0), 0) + int(count)
        result = []
        for (provider, model), counts in sorted(grouped.items()):
            rated = sum(counts.values())
            mean = sum(rating * count for rating, count in counts.items()) / rated
            result.append(RatingRow(provider, model, rated, round(mean, 3), dict(sorted(counts.items()))))
        return result

    async def report(self, grouping: Grouping, days: int | None = None) -> AnalyticsReport:
        rows, total = await self.spend(grouping, days)
        return AnalyticsReport(grouping, first_day(days), rows, total, await self.storage_by_format(),
                               await self.ratings())


def first_day(days: int | None) -> str | None:
    """The first UTC day of the last ``days`` (today included), or None for all of them."""
    if days is None:
        return None
    return (utcnow().date() - timedelta(days=max(1, days) - 1)).isoformat()


def _group(grouping: Grouping, name: str) -> str:
    if grouping == "month":
        return name[:7]
    if grouping == "provider":
        return name or NO_PROVIDER
    return name


def _row(key: str, calls: list[float], images: list[int]) -> SpendRow:
    count, ok, cost, unknown = int(calls[0]), int(calls[1]), float(calls[2]), int(calls[3])
    accepted, failed = images
    return SpendRow(
        key=key, calls=count, ok_calls=ok, cost_usd=round(cost, 6), unknown_cost_calls=unknown,
        accepted_images=accepted, failed_images=failed,
        cost_per_accepted_image=round(cost / accepted, 6) if accepted else None,
        calls_per_accepted_image=round(count / accepted, 4) if accepted else None,
        regeneration_rate=round(max(0, ok - accepted) / accepted, 4) if accepted else None)
