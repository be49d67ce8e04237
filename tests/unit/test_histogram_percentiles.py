"""The stats' one-pass percentiles agree with ``percentile`` over the summed histogram, deltas included."""

from __future__ import annotations

import random

import pytest

from blogimg.db.rollups import histogram_percentiles, percentile

BOUNDS = list(range(1, 200))


def _listed(entries: list[tuple[int, int]]) -> str:
    return ",".join(f"{bucket}:{count}" for bucket, count in entries)


@pytest.mark.parametrize("seed", range(300))
def test_agrees_with_the_summed_histogram_when_deltas_list_a_bucket_twice(seed: int) -> None:
    chance = random.Random(seed)
    summed: dict[int, int] = {}
    entries: list[tuple[int, int]] = []
    for bucket in chance.sample(range(60), chance.randint(1, 30)):
        net = chance.randint(0, 9)
        summed[bucket] = net
        # The rollup row may be stale by a few pending deltas, positive or negative, in any order.
        pending = [chance.choice((-1, 1)) * chance.randint(1, 3) for _ in range(chance.randint(0, 3))]
        entries.append((bucket, net - sum(pending)))
        entries.extend((bucket, change) for change in pending)
    chance.shuffle(entries)
    assert histogram_percentiles(_listed(entries), BOUNDS) == [
        percentile(summed, BOUNDS, 50), percentile(summed, BOUNDS, 95)]


def test_nothing_listed_has_no_percentiles() -> None:
    assert histogram_percentiles(None, BOUNDS) == [None, None]
    assert histogram_percentiles("3:0,4:0", BOUNDS) == [None, None]
