"""bench/imaging_bound_math.py: the bound, checked against every choice of small problems, enumerated."""

from __future__ import annotations

import itertools
import random
import statistics

import pytest
from bench.imaging_bound_math import Point, bound
from bench.imaging_slope import choose


def curve(generator: random.Random, *, monotonic: bool = True) -> list[Point]:
    """A rate–score curve as an encoder gives one: more bytes for a higher score, with noise; or,
    not ``monotonic``, scores that sometimes fall as the quality rises (as a real encoder's can)."""
    points, size, score = [], generator.randint(2_000, 20_000), generator.uniform(35, 60)
    for quality in range(40, 100, 10):
        points.append(Point(quality, size, score))
        size += generator.randint(500, 8_000)
        score = min(99.0, score + generator.uniform(0.5 if monotonic else -4.0, 9.0))
    return points


def cheapest(curves: list[list[Point]], mean: float, lowest: float) -> int | None:
    """The fewest bytes of any choice meeting both conditions, by trying every one; None if none does."""
    best = None
    for choice in itertools.product(*curves):
        scores = [point.score for point in choice]
        if statistics.mean(scores) >= mean and min(scores) >= lowest:
            size = sum(point.size for point in choice)
            best = size if best is None else min(best, size)
    return best


@pytest.mark.parametrize("monotonic", [True, False])
@pytest.mark.parametrize("seed", range(30))
def test_the_bound_is_below_every_choice_and_the_choice_found_meets_the_conditions(seed: int,
                                                                                    monotonic: bool) -> None:
    generator = random.Random(seed)
    curves = [curve(generator, monotonic=monotonic) for _ in range(5)]
    # Conditions the best file of every image meets, so some choice always does.
    best_scores = [max(point.score for point in points) for points in curves]
    lowest = min(best_scores) * generator.uniform(0.7, 1.0)
    mean = generator.uniform(lowest, statistics.mean(best_scores))
    optimum = cheapest(curves, mean, lowest)
    assert optimum is not None
    found = bound(curves, mean, lowest)
    assert found.feasible and found.bound is not None
    assert found.bound <= optimum + 1e-6  # a lower bound on every allowed choice
    assert found.mean >= mean - 1e-9 and found.lowest >= lowest  # the choice found meets both conditions
    # Duality's gap: the choice found differs from a bound-attaining one in about one image's quality.
    assert found.bytes - found.bound <= max(max(p.size for p in c) - min(p.size for p in c) for c in curves)


def test_a_mean_no_choice_reaches_has_no_bound() -> None:
    curves = [[Point(50, 1_000, 60.0), Point(90, 3_000, 80.0)], [Point(50, 1_200, 62.0), Point(90, 3_100, 81.0)]]
    found = bound(curves, mean=95.0, lowest=55.0)
    assert not found.feasible and found.bound is None
    assert found.bytes == 6_100 and found.mean == 80.5  # the best there is, shown for what it is


def test_an_image_with_no_file_at_the_lowest_score_has_no_bound() -> None:
    curves = [[Point(50, 1_000, 60.0), Point(90, 3_000, 80.0)], [Point(50, 1_200, 50.0), Point(90, 3_100, 64.0)]]
    found = bound(curves, mean=60.0, lowest=65.0)
    assert not found.feasible and found.bound is None and found.lowest == 64.0


def test_a_costlier_lossless_file_is_chosen_when_the_mean_needs_it() -> None:
    curves = [[Point(50, 5_000, 70.0), Point(None, 6_000, 100.0)], [Point(50, 1_000, 70.0), Point(90, 2_000, 75.0)]]
    # 85 on average: only the lossless file of the first image gets there (with 70 or 75 beside it).
    found = bound(curves, mean=85.0, lowest=60.0)
    assert found.feasible and found.lossless == 1 and found.bytes == 7_000 and found.bound == pytest.approx(7_000)
    # Without the condition on the mean the cheapest files are the lossy ones, and the bound is their sum.
    cheap = bound(curves, mean=60.0, lowest=60.0)
    assert cheap.lossless == 0 and cheap.bytes == 6_000 and cheap.bound == pytest.approx(6_000)


def test_the_simulated_search_raises_a_file_below_the_floor_at_the_scored_size() -> None:
    # On the probe the cheap quality looks good enough (70); at the scored size it is not (55).
    probe = [Point(40, 1_000, 70.0), Point(60, 1_500, 74.0), Point(80, 3_000, 80.0)]
    scored = [Point(40, 10_000, 55.0), Point(60, 15_000, 66.0), Point(80, 30_000, 75.0)]
    assert choose(probe, scored, None, 1.0, weight=1.0, floor=50.0) == scored[0]  # the cheapest per point
    assert choose(probe, scored, None, 1.0, weight=1.0, floor=60.0) == scored[1]  # raised once
    assert choose(probe, scored, None, 1.0, weight=1.0, floor=90.0) == scored[2]  # as far as the grid goes
    assert choose(probe, scored, None, 1.0, weight=1_000.0, floor=50.0) == scored[2]  # score is dear: the best


def test_the_simulated_search_keeps_a_lossless_file_only_when_smaller() -> None:
    probe = [Point(40, 1_000, 70.0), Point(80, 3_000, 80.0)]
    scored = [Point(40, 10_000, 65.0), Point(80, 30_000, 75.0)]
    smaller, larger = Point(None, 8_000, 100.0), Point(None, 12_000, 100.0)
    assert choose(probe, scored, smaller, 1.0, weight=1.0, floor=60.0) == smaller
    assert choose(probe, scored, larger, 1.0, weight=1.0, floor=60.0) == scored[0]
