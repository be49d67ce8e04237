"""Per-image quality at one price per score point: the ``slope`` quality search.

A reader sees a blog's images together, so what matters is their average look and its worst
image, not that each file reaches one score. The fewest bytes for a given average come from
taking every image to where one more SSIMULACRA2 point costs the same bytes (a Lagrangian
allocation): a smooth image or a card gains points for almost nothing and goes up; a dense one
(small text, fine texture) pays thousands of bytes a point and comes down. The benchmark's
allocation bound (bench/imaging_bound.py) measured that no choice of quality per image can do
much better at sharp's mean and lowest score, and that a fixed quality or a constant target are
well short of it.

One image at a time, without seeing the others: on the probe (the narrowest variant), keep the
quality minimising ``bytes per megapixel − weight × score``, where ``weight`` (a setting per
format, ``*_POINT_BYTES``) is what a point is worth. The walk starts at the format's fixed quality
and steps up by ``WALK_STEP`` qualities while the cost falls, else down while it falls: three
trials when the start is best, two plus one per step taken up, three plus one per step taken
down, at most ``WALK_TRIALS``. (Two shortcuts were measured on the benchmark corpus: a third trial
placed by a model of how the price grows, and no step down when the step up cost little more than
``weight``. Each saved a trial an image but chose worse: the master at 0.821× and 0.832× sharp's
bytes where the walk chose 0.800×, at means 0.1 and 0.4 higher.)

Then the floor, checked where readers see the file rather than on the probe, which cannot
guard it (a full-size master of small text scores up to 13 points below its 480-px probe):
``raise_to_floor`` encodes at the check size and raises the quality until the file reaches the
format's lowest score (``*_LOWEST_SCORE``). The checked file is a deliverable, so it is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyvips

from blogimg.imaging.quality_search import HIGHEST, LOWEST, Choice, score_file, weigh_lossless

__all__ = ["Checked", "MAX_RAISES", "RAISE_STEP", "WALK_STEP", "WALK_TRIALS", "balance_quality", "raise_to_floor"]

WALK_TRIALS = 5
#: Qualities between trials: about two score points near the defaults.
WALK_STEP = {"jpeg": 5, "webp": 5, "avif": 4}
RAISE_STEP = 4  #: qualities per raise while a checked file is below the floor
MAX_RAISES = 4  #: then the highest quality's file is kept, below the floor


@dataclass(frozen=True, slots=True)
class Checked:
    """A file made at the check size: its size, quality, score and bytes (kept as that file)."""

    width: int
    height: int
    quality: int
    score: float
    data: bytes
    trials: int  #: encodes scored at the check size


def balance_quality(probe: pyvips.Image, image_format: str, weight: float, encode: Callable[[int], bytes], *,
                    start: int, lossless: Callable[[], bytes] | None = None) -> Choice:
    """The quality (on a walk of ``WALK_STEP`` from ``start``) minimising bytes per megapixel of
    ``encode(quality)`` minus ``weight`` times its score against ``probe``; with ``lossless``
    (flat art), the exact file instead when it is smaller than that one."""
    megapixels = probe.width * probe.height / 1e6
    step = WALK_STEP.get(image_format, 5)
    tried: dict[int, tuple[float, bytes]] = {}

    def cost(quality: int) -> float:
        if quality not in tried:
            data = encode(quality)
            tried[quality] = (score_file(probe, data), data)
        score, data = tried[quality]
        return len(data) / megapixels - weight * score

    best = min(HIGHEST, max(LOWEST, start))
    cost(best)
    for direction in (1, -1):
        moved = False
        while len(tried) < WALK_TRIALS:
            following = min(HIGHEST, max(LOWEST, best + direction * step))
            if following == best or cost(following) >= cost(best):
                break
            best, moved = following, True
        if moved:
            break  # the cost fell going up, so it rises going down (it is near-convex)
    choice = Choice(best, tried[best][0], tried[best][1], len(tried))
    return weigh_lossless(choice, lossless)


def raise_to_floor(reference: pyvips.Image, encode: Callable[[int], bytes], quality: int,
                   floor: float, known: tuple[bytes, float] | None = None, *,
                   score: Callable[[pyvips.Image, bytes], float] = score_file) -> Checked:
    """``encode(quality)`` of ``reference`` (the image at the check size), raised ``RAISE_STEP``
    at a time while its ``score`` is below ``floor``; after ``MAX_RAISES`` raises (or at HIGHEST)
    the last file is kept, below the floor. ``known``: that first file and its score, when the
    search made it already (the probe)."""
    if known is None:
        data = encode(quality)
        reached = score(reference, data)
    else:
        data, reached = known
    trials = 1
    while reached < floor and quality < HIGHEST and trials <= MAX_RAISES:
        quality = min(HIGHEST, quality + RAISE_STEP)
        data = encode(quality)
        reached = score(reference, data)
        trials += 1
    return Checked(reference.width, reference.height, quality, reached, data, trials)
