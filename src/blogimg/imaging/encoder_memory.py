"""How much memory the encoders may hold at once, so the largest image cannot stack them up.

The WebP and AVIF encoders take the whole picture at once and keep several copies of it (RGBA,
YUV, sharp-YUV planes, the encoder's own frames): measured on a 7071×7071 image, about 16 bytes a
pixel for WebP and 21 for AVIF with chroma subsampled (4:2:0), 2.3 times that at 4:4:4 (the
default); with an alpha band, 34 for WebP and 32 for AVIF 4:2:0. Encoding the full-size WebP,
the full-size AVIF and the progressive JPEG master of one such image side by side peaked at 2.6 GB.
Each encode reserves its estimate from one budget shared by every image in the process first;
one that needs more than the whole budget waits until it can run alone, and may then hold more
than the budget (the widest AVIF variant, 4096² with alpha at 4:4:4, is estimated at 1.3 GB at
quality 51). Small files (every variant of an ordinary image) fit many at once, so the budget
only serialises the large ones.

When a large encode ends, its memory is handed back to the system before the next one starts:
glibc keeps what a thread frees in that thread's arena, where an encoder on another pool thread
cannot reuse it, and resident memory grew by a quarter (250 MB on the 7071×7071 image) without.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache

DEFAULT_BUDGET_BYTES = 768 * 1024 * 1024
_AVIF_GROWTH_PER_QUALITY = 13 / 21 / 41  #: from +13 bytes a pixel over the 41 qualities from 50 to 91
#: Reservations from this size up give their memory back to the system when they end.
_RETURN_AFTER_BYTES = 32 * 1024 * 1024
#: Bytes each encoder holds per output pixel, without and with an alpha band (measured with
#: libvips 8.18, libwebp and libaom; the PNG encoder streams rows and holds almost nothing).
_BYTES_PER_PIXEL = {
    "avif": (21, 32),
    "webp": (16, 34),
    # mozjpeg: progressive scans and trellis quantisation keep every coefficient (8.6 measured on
    # a 4000×4000 image); jpegli: the RGB copy handed to it and its own buffers (3 + 4.2)
    "jpeg": (9, 9),
    "png": (1, 1),
}
#: From quality 90 libvips stops subsampling a JPEG's chroma, so mozjpeg keeps three full planes of
#: coefficients: 14.6 bytes a pixel measured at 95 on a 7071×7071 image (7.7 at 83).
_JPEG_FULL_CHROMA_FROM_QUALITY = 90
_JPEG_FULL_CHROMA_BYTES_PER_PIXEL = 15
#: AVIF without chroma subsampling (4:4:4, the default) holds full-size chroma planes in every
#: frame libaom keeps: 52.6 bytes a pixel against 22.9 for 4:2:0 at quality 51 (2000×2000 image).
_AVIF_FULL_CHROMA_FACTOR = 2.5


#: SSIMULACRA2 (perceptual.py) holds both images in linear light and a few float planes with their
#: blurs: peak resident memory grew 49 bytes a pixel scoring a 2048×2048 pair (206 MB), 64 with
#: slack.
_SCORING_BYTES_PER_PIXEL = 64


def scoring_estimate(width: int, height: int) -> int:
    """Bytes scoring a ``width``×``height`` file against its reference holds at its peak."""
    return _SCORING_BYTES_PER_PIXEL * width * height


def estimate(image_format: str, width: int, height: int, *, has_alpha: bool, quality: int | None = None,
             avif_chroma: str = "4:4:4") -> int:
    """Bytes the encoder of ``image_format`` holds while encoding a ``width``×``height`` image
    at ``quality`` (the defaults' range when None) and, for AVIF, ``avif_chroma``."""
    without_alpha, with_alpha = _BYTES_PER_PIXEL[image_format]
    per_pixel: float = with_alpha if has_alpha else without_alpha
    if image_format == "avif" and quality is not None and quality > 50:
        # libaom keeps more per pixel at high qualities: 34 bytes at 91 against 21 at 50
        # (measured on a 3000×3000 image); a quality search may pick either.
        per_pixel = per_pixel * (1 + (quality - 50) * _AVIF_GROWTH_PER_QUALITY)
    if image_format == "avif" and avif_chroma == "4:4:4":
        per_pixel *= _AVIF_FULL_CHROMA_FACTOR
    if image_format == "jpeg" and (quality is None or quality >= _JPEG_FULL_CHROMA_FROM_QUALITY):
        per_pixel = max(per_pixel, _JPEG_FULL_CHROMA_BYTES_PER_PIXEL)
    return math.ceil(width * height * per_pixel)


class MemoryBudget:
    """A weighted semaphore over bytes: ``reserve(n)`` waits until n bytes are free.

    Reservations are granted first come, first served, so a large one is never starved by a
    stream of small ones that would each fit beside what is running.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self._free = total
        self._changed = threading.Condition()
        self._waiting: deque[object] = deque()

    @contextmanager
    def reserve(self, amount: int) -> Iterator[None]:
        # More than the whole budget would never be free: such a reservation takes all of it.
        amount = max(0, min(amount, self.total))
        with self._changed:
            turn = object()
            self._waiting.append(turn)
            try:
                self._changed.wait_for(lambda: self._waiting[0] is turn and self._free >= amount)
            finally:  # served or interrupted, it leaves the queue: the next in line may go
                self._waiting.remove(turn)
                self._changed.notify_all()
            self._free -= amount
        try:
            yield
        finally:
            if amount >= _RETURN_AFTER_BYTES:
                _return_freed_memory()
            with self._changed:
                self._free += amount
                self._changed.notify_all()


@cache
def shared_budget(total: int) -> MemoryBudget:
    """The one budget of a given size in this process, shared by every image being processed."""
    return MemoryBudget(total)


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to hand back this way
        return None


_MALLOC_TRIM = _malloc_trim()


def _return_freed_memory() -> None:
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
