"""The allocation bound's arithmetic (bench/imaging_bound.py), apart from any encoder.

Given each image's points (quality, bytes, score), the fewest total bytes of a choice of one point
per image with a mean score ≥ ``mean`` and every score ≥ ``lowest`` is a small knapsack problem.
Lagrangian duality bounds it from below without trying every choice: for any weight λ ≥ 0,

    g(λ) = Σᵢ min over image i's allowed points of [bytes − λ·(score − mean)]

is at most the bytes of every choice meeting both conditions, because for such a choice the
subtracted terms sum to ≥ 0. g is concave in λ; the bisection below looks for the smallest λ whose
minimisers reach the mean, which is where g peaks, and keeps the largest g it met. The minimisers
there are a choice meeting the conditions, so the bound's distance from the optimum is at most
theirs: on real rate–score curves, a fraction of one image's step between grid qualities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

BISECTIONS = 60
#: blogimg's fast SSIMULACRA2 against the reference package on the benchmark corpus: their largest
#: difference. Conditions on the reference's scores are relaxed or tightened by it, so no claim rests
#: on the two metrics' last digit.
METRIC_TOLERANCE = 0.002
HEAVIEST = 1e12  #: bytes per score point: a weight beyond this buys no more score on any real curve


class Point(NamedTuple):
    quality: int | None  #: None: a lossless file
    size: int  #: bytes
    score: float


@dataclass(frozen=True)
class Bound:
    bound: float | None  #: None when no choice meets the conditions
    bytes: int  #: of the choice found (meeting the conditions when ``feasible``)
    mean: float
    lowest: float
    feasible: bool
    lossless: int  #: lossless files in the choice

    def as_dict(self) -> dict:
        return {"bytes": self.bytes, "mean": self.mean, "lowest": self.lowest, "feasible": self.feasible,
                "lossless": self.lossless}


def lagrangian(curves: list[list[Point]], weight: float, mean: float) -> tuple[float, list[Point]]:
    """g(weight) over the points given (already limited to those allowed), and its minimisers."""
    total, chosen = 0.0, []
    for points in curves:
        best = min(points, key=lambda p: p.size - weight * (p.score - mean))
        total += best.size - weight * (best.score - mean)
        chosen.append(best)
    return total, chosen


def bound(curves: list[list[Point]], mean: float, lowest: float) -> Bound:
    """The bound on the bytes of any choice meeting ``mean`` and ``lowest``, and the choice found."""
    allowed = [[p for p in points if p.score >= lowest] for points in curves]
    if not all(allowed):  # some image has no point at or above the lowest: nothing meets the conditions
        best = [max(points, key=lambda p: p.score) for points in curves]
        return _found(None, best, feasible=False)

    def reaches(weight: float) -> tuple[float, list[Point], bool]:
        value, chosen = lagrangian(allowed, weight, mean)
        return value, chosen, sum(p.score for p in chosen) >= mean * len(chosen)

    best_value, _, _ = reaches(0.0)
    low, high = 0.0, 1.0
    while not reaches(high)[2] and high < HEAVIEST:
        high *= 4
    value, chosen, feasible = reaches(high)
    if not feasible:  # even the best allowed file of every image misses the mean
        return _found(None, chosen, feasible=False)
    best_value = max(best_value, value)
    for _ in range(BISECTIONS):
        middle = (low + high) / 2
        value, candidate, meets = reaches(middle)
        best_value = max(best_value, value)
        if meets:
            high, chosen = middle, candidate
        else:
            low = middle
    return _found(best_value, chosen, feasible=True)


def _found(value: float | None, chosen: list[Point], *, feasible: bool) -> Bound:
    scores = [p.score for p in chosen]
    return Bound(value, sum(p.size for p in chosen), sum(scores) / len(scores), min(scores), feasible,
                 sum(1 for p in chosen if p.quality is None))
