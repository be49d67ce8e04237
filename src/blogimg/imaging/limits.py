"""The shapes of image blogimg agrees to decode, checked from the header before any pixel is.

A pixel limit alone is not enough: a 16383×1 strip is a few hundred bytes and far below any pixel
limit, yet the square attention thumbnail scales its one-pixel side up to 300 and the long side
with it, to 4.9 million × 300 pixels (8 GB and most of a minute). So the shape is bounded three
ways, each with its own message:

- each side ≤ 16383, the largest picture WebP can encode (the full-width variant is WebP);
- width × height ≤ ``max_pixels``, which also bounds the decoded bytes, because every image is
  decoded straight to 8 bits and at most four bands (see decode.py): ``max_pixels`` × 4 bytes;
- longest side ÷ shortest side ≤ ``max_aspect_ratio``, so nothing made from the image (the
  thumbnail above all) is ever far larger than the image itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from blogimg.errors import ImageRejectedError

#: WebP stores each side in 14 bits: libwebp refuses 16384 and more.
MAX_SIDE = 16_383
#: Every shape a provider makes (OpenAI's 3:2 and 2:3, Gemini's 21:9 and 9:16, a 4:1 banner) with
#: room to spare, while a 16383-pixel side still has 2048 pixels across.
DEFAULT_MAX_ASPECT_RATIO = 8.0
DEFAULT_MAX_PIXELS = 50_000_000
#: The largest responsive variant, in pixels: 4096×4096, every provider's largest output. WebP and
#: AVIF encoders hold 34 to 80 bytes a pixel of an RGBA picture (encoder_memory.py), 1.7 to 4 GB
#: for a full-size 7071×7071 variant, and no page shows more than a 4K screen's width. A larger
#: original's widest variant is scaled down to this; its master keeps every pixel.
DEFAULT_MAX_VARIANT_PIXELS = 4096 * 4096


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """The largest image decoded: pixels, per side, and how elongated."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO

    def check(self, width: int, height: int) -> None:
        """Raise ImageRejectedError, naming the shape and the limit it breaks, unless it fits."""
        shape = f"{width}×{height}"
        if width < 1 or height < 1:
            raise ImageRejectedError(f"image is {shape}: it has no pixels")
        if width > MAX_SIDE or height > MAX_SIDE:
            raise ImageRejectedError(
                f"image is {shape}, over the limit of {MAX_SIDE} pixels per side "
                "(the largest WebP can encode)"
            )
        if width * height > self.max_pixels:
            raise ImageRejectedError(
                f"image is {shape} = {width * height:,} pixels, over the limit of "
                f"{self.max_pixels:,} pixels"
            )
        ratio = max(width, height) / min(width, height)
        if ratio > self.max_aspect_ratio:
            raise ImageRejectedError(
                f"image is {shape}, {_decimal(ratio)}:1, more elongated than the limit of "
                f"{_decimal(self.max_aspect_ratio)}:1 (longest side over shortest)"
            )


def _decimal(value: float) -> str:
    """``16383``, ``2.33``, ``8``: two decimals at most, none that are zero."""
    return f"{value:.2f}".rstrip("0").rstrip(".")
