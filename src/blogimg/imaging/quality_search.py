"""Per-image quality: the lowest encoder quality whose file reaches a target perceptual score.

A fixed quality over-serves smooth images (a gradient is near-perfect at any quality) and
under-serves detailed ones (fine texture falls apart at the same setting). Searching each image's
quality against SSIMULACRA2 (perceptual.py) gives every image the same look for the fewest bytes,
as Cloudinary's ``q_auto`` does, in the open.

What one search costs, and how it is kept small:

- Trials run on a *probe*: the image at the narrowest variant width (480 px by default), resized
  once and reused by every trial, and the probe's own file is the 480-px variant itself: its
  trial bytes are kept, not encoded again. The score at a wider size follows the probe's only
  roughly, and either way, by format and content. Measured on the benchmark corpus at one quality
  (bench/imaging_bound.py, files the probe scores ≥ 60): a full-size JPEG master of a photograph a
  median 3 points above its probe, of small text up to 12.7 below (the probe's downscale hides the
  ringing around sharp glyphs); a 768-px WebP of a photograph half a point below, of a diagram or a
  card up to 6.2 below; a 768-px AVIF a point above, up to 4.9 below. So the floor and the targets
  hold on the probe, and only about at the other sizes.
- Two modes here (the default, *slope*, is quality_balance.py's). *target*: every file reaches
  the target with the lowest quality that does (as ``q_auto``). *floor*: the format's fixed
  quality is kept while its file scores between a floor (medium-high quality by default) and a
  ceiling (visually lossless); only files outside are searched, up to the floor or down to the
  ceiling. A fixed quality spends bytes where they buy the most score (a smooth image gains many
  points for few bytes, a textured one few for many), so at an equal *mean* score it needs fewer
  bytes than a constant target, and the floor still keeps every image from looking bad; most
  files need one trial.
- The first guess comes from the target (a line fitted per format on the corpus), the next from
  the slope between the last two trials (secant), never outside the bracket found so far; the
  search ends as soon as a passing trial is within ``CLOSE_ENOUGH`` of the target or the bracket is
  ``STEP`` qualities wide. Typical: two or three trials.
- Flat art (few colours) also tries the lossless file the format allows (WebP lossless, PNG for
  the master) and keeps it when it is smaller than the lossy one at the target: a perfect score
  for fewer bytes.

The search is a pure function of the image and the settings, so the same image always gets the
same files and so the same content-addressed keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyvips

from blogimg.imaging.perceptual import ssimulacra2

__all__ = ["CLOSE_ENOUGH", "Choice", "HIGHEST", "LOWEST", "MAX_TRIALS", "few_colours", "first_guess", "score_file",
           "search_quality", "weigh_lossless"]

MAX_TRIALS = 5
CLOSE_ENOUGH = 1.0  #: a passing trial this close to the target ends the search
STEP = 2  #: qualities: a bracket this narrow ends the search
LOWEST, HIGHEST = 10, 98
#: Score points per quality step assumed before two trials measure it (about what JPEG, WebP and
#: AVIF showed between qualities 55 and 85 on photographs of the benchmark corpus).
_SLOPE = 0.45
_SLOPES = (0.08, 3.0)  #: a measured slope is kept within these, so one odd trial cannot fling the next
#: first guess = intercept + per_point × target (target mode): a rough line through the qualities
#: that reached scores of 65–80 on photographs of the benchmark corpus at 480 px, per format; the
#: search corrects it from the first trial on.
_FIRST_GUESS = {"jpeg": (-68.0, 1.85), "webp": (-66.0, 1.95), "avif": (-70.0, 1.65)}
FLAT_COLOURS = 256  #: at most this many distinct colours in the probe: flat art, try lossless


@dataclass(frozen=True, slots=True)
class Choice:
    """What the search chose for one format of one image."""

    quality: int | None  #: None: lossless
    score: float  #: SSIMULACRA2 of the probe's file at that quality (100.0 for lossless)
    data: bytes  #: the probe's file at that quality
    trials: int  #: encodes scored, lossless candidate included
    lossy: Choice | None = None  #: with a lossless choice, the lossy one it beat (for JPEG variants)

    @property
    def lossless(self) -> bool:
        return self.quality is None


def first_guess(image_format: str, target: float) -> int:
    intercept, per_point = _FIRST_GUESS.get(image_format, _FIRST_GUESS["webp"])
    return _clamp(round(intercept + per_point * target), LOWEST, HIGHEST)


def score_file(reference: pyvips.Image, data: bytes) -> float:
    """SSIMULACRA2 of the encoded ``data`` against ``reference``, the pixels it was made from."""
    decoded = pyvips.Image.new_from_buffer(data, "")
    if decoded.interpretation not in ("srgb", "b-w") or decoded.format != "uchar":
        decoded = decoded.colourspace("srgb").cast("uchar")
    if not decoded.hasalpha() and reference.hasalpha():  # a JPEG of an image with alpha
        reference = reference.flatten(background=[255, 255, 255])
    if decoded.bands != reference.bands:
        decoded = decoded.colourspace("srgb")
    return ssimulacra2(reference, decoded)


def search_quality(probe: pyvips.Image, image_format: str, target: float, encode: Callable[[int], bytes],
                   *, start: int | None = None, ceiling: float | None = None,
                   lossless: Callable[[], bytes] | None = None) -> Choice:
    """The lowest quality (within ``STEP``) at which ``encode(quality)`` of ``probe`` scores at
    least ``target``; the highest quality's file when none does.

    With a ``ceiling`` (floor mode), ``start`` is kept when its file scores between ``target`` and
    ``ceiling``; above the ceiling the lowest quality reaching the ceiling is searched, below the
    target the lowest reaching the target. ``lossless``, when given (flat art), makes the exact
    file to weigh against the lossy one."""
    tried: dict[int, tuple[float, bytes]] = {}
    passed: int | None = None  # lowest quality known to reach the target
    failed: int | None = None  # highest quality known to miss it
    quality = _clamp(start, LOWEST, HIGHEST) if start is not None else first_guess(image_format, target)
    while len(tried) < MAX_TRIALS:
        data = encode(quality)
        score = score_file(probe, data)
        tried[quality] = (score, data)
        if ceiling is not None and len(tried) == 1:
            if target <= score <= ceiling:  # within the bounds: the start stays
                passed = quality
                break
            if score > ceiling >= target:  # more than anyone can see: come down to the ceiling
                target = ceiling
        if score >= target:
            passed = quality if passed is None else min(passed, quality)
            if score - target <= CLOSE_ENOUGH:
                break
        else:
            failed = quality if failed is None else max(failed, quality)
        if passed is not None and failed is not None and passed - failed <= STEP:
            break
        if (passed is not None and passed <= LOWEST) or (failed is not None and failed >= HIGHEST):
            break
        following = _next_quality(tried, quality, target, passed, failed)
        if following is None:
            break
        quality = following
    if passed is None:  # even the best quality tried misses: keep the best there is
        if (failed is None or failed < HIGHEST) and HIGHEST not in tried:
            data = encode(HIGHEST)
            tried[HIGHEST] = (score_file(probe, data), data)
        best = max(tried)
        choice = Choice(best, tried[best][0], tried[best][1], len(tried))
    else:
        choice = Choice(passed, tried[passed][0], tried[passed][1], len(tried))
    return weigh_lossless(choice, lossless)


def weigh_lossless(choice: Choice, lossless: Callable[[], bytes] | None) -> Choice:
    """``choice``, or the exact file ``lossless`` makes (flat art) when that is smaller."""
    if lossless is None:
        return choice
    exact = lossless()
    if len(exact) < len(choice.data):
        return Choice(None, 100.0, exact, choice.trials + 1, lossy=choice)
    return Choice(choice.quality, choice.score, choice.data, choice.trials + 1)


def few_colours(image: pyvips.Image, limit: int = FLAT_COLOURS) -> bool:
    """Whether ``image`` (8-bit) has at most ``limit`` distinct colours: flat art, such as a chart,
    a diagram or a logo, that a lossless file may hold in fewer bytes than a lossy one."""
    if image.format != "uchar":
        return False
    # A flat image's sketch has few colours too; most photographs are ruled out here cheaply.
    sketch = image.thumbnail_image(64) if image.width > 64 else image
    if _distinct(sketch.write_to_memory(), sketch.bands, limit) > limit:
        return False
    return _distinct(image.write_to_memory(), image.bands, limit) <= limit


def _distinct(pixels: bytes, bands: int, limit: int) -> int:
    seen: set[bytes] = set()
    view = memoryview(pixels)
    for start in range(0, len(pixels), bands):
        seen.add(bytes(view[start : start + bands]))
        if len(seen) > limit:
            break
    return len(seen)


def _next_quality(tried: dict[int, tuple[float, bytes]], quality: int, target: float,
                  passed: int | None, failed: int | None) -> int | None:
    score = tried[quality][0]
    slope = _SLOPE
    others = [q for q in tried if q != quality]
    if others:  # the secant through this trial and the nearest other one
        nearest = min(others, key=lambda q: abs(q - quality))
        measured = (score - tried[nearest][0]) / (quality - nearest)
        slope = min(_SLOPES[1], max(_SLOPES[0], measured)) if measured > 0 else _SLOPE
    # Aim a little above the target: a trial that just passes ends the search; one that just
    # misses costs another.
    wanted = quality + (target + CLOSE_ENOUGH / 2 - score) / slope
    low = (failed + 1) if failed is not None else LOWEST
    high = (passed - 1) if passed is not None else HIGHEST
    following = _clamp(round(wanted), low, high)
    if following in tried:  # the line points back at a trial already made: bisect instead
        following = (low + high) // 2
    if following in tried:
        return next((q for q in range(low, high + 1) if q not in tried), None)
    return following


def _clamp(value: float, low: int, high: int) -> int:
    return int(min(high, max(low, value)))
