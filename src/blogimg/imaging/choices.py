"""Which quality each format of one image gets: the searches of quality_balance.py and
quality_search.py, run on the probe (the image at its narrowest variant width) with blogimg's
encoders and memory budget, and in slope mode the floor checked at the size readers see."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyvips

from blogimg.imaging.encoder_memory import estimate, scoring_estimate, shared_budget
from blogimg.imaging.encoders import encode_bytes
from blogimg.imaging.quality_balance import Checked, balance_quality, raise_to_floor
from blogimg.imaging.quality_search import Choice, score_file, search_quality

if TYPE_CHECKING:
    from blogimg.imaging.options import ImagingOptions

__all__ = ["LOSSLESS_WEBP_QUALITY", "check", "choose", "encode_with_budget"]

#: The Q of a lossless WebP: with lossless, libwebp reads it as how hard to compress, not fidelity
#: (the pixels are exact); encoders.LOSSLESS_WEBP_EFFORT is its other knob, the method.
LOSSLESS_WEBP_QUALITY = 75


def encode_with_budget(image: pyvips.Image, image_format: str, quality: int, options: ImagingOptions, *,
                       lossless: bool = False) -> bytes:
    """``encode_bytes`` within the process-wide encoder memory budget (encoder_memory.py)."""
    needed = estimate(image_format, image.width, image.height, has_alpha=image.hasalpha(), quality=quality,
                      avif_chroma=options.avif_chroma)
    with shared_budget(options.encoder_memory_bytes).reserve(needed):
        return encode_bytes(image, image_format, quality, jpeg_encoder=options.jpeg_encoder,
                            avif_effort=options.avif_effort, webp_effort=options.webp_effort,
                            avif_chroma=options.avif_chroma, lossless=lossless)


def choose(probe: pyvips.Image, image_format: str, options: ImagingOptions, *, flat: bool) -> Choice:
    """The search's choice for ``image_format`` (jpeg: the master) of the image ``probe`` shows.

    ``flat`` (quality_search.few_colours of the probe) weighs a lossless file too: WebP lossless
    for WebP, PNG for a JPEG master. AVIF has no lossless mode worth its bytes here."""
    def lossy(quality: int) -> bytes:
        return encode_with_budget(probe, image_format, quality, options)

    lossless = None
    if flat and image_format == "webp":
        def lossless() -> bytes:
            return encode_with_budget(probe, "webp", LOSSLESS_WEBP_QUALITY, options, lossless=True)
    elif flat and image_format == "jpeg":
        def lossless() -> bytes:
            return encode_with_budget(probe, "png", 100, options)
    if options.quality_search == "slope" and options.point_bytes(image_format) > 0:
        return balance_quality(probe, image_format, options.point_bytes(image_format), lossy, lossless=lossless)
    if options.quality_search in ("floor", "slope"):  # slope with no price per point: floor
        return search_quality(probe, image_format, options.floor_score, lossy,
                              start=options.fixed_quality(image_format), ceiling=options.ceiling_score,
                              lossless=lossless)
    return search_quality(probe, image_format, options.target_score(image_format), lossy, lossless=lossless)


def check(image: pyvips.Image, image_format: str, choice: Choice, options: ImagingOptions, *,
          probe: pyvips.Image | None = None, margin: float | None = None) -> Checked | None:
    """Slope mode: ``choice``'s lossy quality made at ``image``'s size (the size readers see) and
    raised until it reaches the format's lowest score; None in other modes, for a lossless choice,
    and when the probe scored at least ``margin`` above that lowest score. When ``image`` is the
    ``probe``, the choice's own file is that first file."""
    if options.quality_search != "slope" or options.point_bytes(image_format) <= 0 or choice.quality is None:
        return None
    if margin is not None and choice.score >= options.lowest_score(image_format) + margin:
        return None

    if image is not probe:
        image = image.copy_memory()  # resized once, not once per encode and score

    def lossy(quality: int) -> bytes:
        return encode_with_budget(image, image_format, quality, options)

    def budgeted_score(reference: pyvips.Image, data: bytes) -> float:
        # Scoring a full-size master holds more than its encoder did: it shares the same budget.
        with shared_budget(options.encoder_memory_bytes).reserve(scoring_estimate(reference.width, reference.height)):
            return score_file(reference, data)

    known = (choice.data, choice.score) if image is probe else None
    return raise_to_floor(image, lossy, choice.quality, options.lowest_score(image_format), known,
                          score=budgeted_score)
