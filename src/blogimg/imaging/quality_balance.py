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
format, ``*_POINT_BYTES``) is what a point is worth. That cost is not convex in the quality: on a
small probe libwebp and mozjpeg step their bytes and scores unevenly, so the cost has dips a few
qualities apart. A walk from the fixed quality (5 qualities a step while the cost fell, which this
replaced) stopped in the first dip it met. So the search first tries ``SCAN`` (qualities across the
useful range), then the best so far ± each of ``REFINE`` in turn: 8 trials at most. Nothing
guarantees it the best of every quality (a dip narrower than its steps can hide between them), but
on the benchmark corpus, with the prices refitted, it took WebP from 0.832× sharp's bytes to 0.798×
and the JPEG master from 0.800× to 0.791×, at equal quality; trying every quality on the probe
(WebP 30–95, JPEG 40–95) did only about as well.

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

__all__ = ["Checked", "MAX_RAISES", "RAISE_STEP", "REFINE", "SCAN", "balance_quality", "raise_to_floor"]

#: The first trials: four qualities across the range the best choices on the probe span on the
#: benchmark corpus at the default prices (WebP 32–93, the JPEG master 61–93). AVIF's are not
#: calibrated: its price is 0 by default, so it keeps the floor search ...
SCAN = {"jpeg": (55, 67, 79, 91), "webp": (40, 55, 70, 85), "avif": (40, 52, 64, 76)}
#: ... then the best so far and its neighbours this far away, each step in turn.
REFINE = (7, 3)
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
                    lossless: Callable[[], bytes] | None = None) -> Choice:
    """The quality (of ``SCAN``, then refined by ``REFINE``) minimising bytes per megapixel of
    ``encode(quality)`` minus ``weight`` times its score against ``probe``; with ``lossless``
    (flat art), the exact file instead when it is smaller than that one."""
    megapixels = probe.width * probe.height / 1e6
    tried: dict[int, tuple[float, bytes]] = {}

    def cost(quality: int) -> float:
        if quality not in tried:
            data = encode(quality)
            tried[quality] = (score_file(probe, data), data)
        score, data = tried[quality]
        return len(data) / megapixels - weight * score

    def in_range(quality: int) -> int:
        return min(HIGHEST, max(LOWEST, quality))

    # Ties go to the lower quality: equal costs give the same choice whatever order they came in.
    best = min((in_range(q) for q in SCAN.get(image_format, SCAN["webp"])), key=lambda q: (cost(q), q))
    for step in REFINE:
        best = min((best, in_range(best - step), in_range(best + step)), key=lambda q: (cost(q), q))
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
