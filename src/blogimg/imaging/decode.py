"""Untrusted bytes → one 8-bit sRGB image, or an ImageRejectedError that says why not.

Provider output is treated as hostile input:

- the format is sniffed from magic bytes and only the JPEG, PNG, WebP and AVIF loaders may run
  (never libvips' loader guessing, which would also accept SVG, PDF, MATLAB and more);
- the shape is read from the header and checked against ImageLimits *before* any pixel is decoded;
- decoding fails on the first error, so a truncated file is rejected rather than half-grey;
- the decode streams from top to bottom and is converted to 8-bit sRGB on the way
  (colour_profile.py), so what is held in memory is at most 4 bytes a pixel, whatever the input's
  depth: 200 MB for the largest image allowed, where a 16-bit RGBA decode held 400 MB and copies.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import pyvips

from blogimg.errors import ImageRejectedError
from blogimg.imaging.colour_profile import DEFAULT_MAX_PROFILE_BYTES, to_srgb
from blogimg.imaging.limits import ImageLimits

# The loaders read from a Source over the caller's bytes: the *_buffer loaders copy the whole
# input into a blob on every call (twice over, header and pixels), as much again as the file.
# A Source does not keep the bytes alive for libvips, so every read happens while ``data`` is in
# scope: each function below copies the pixels it returns into memory before it returns.
_LOADERS: dict[str, Callable[..., pyvips.Image]] = {
    "jpeg": pyvips.Image.jpegload_source,
    "png": pyvips.Image.pngload_source,
    "webp": pyvips.Image.webpload_source,
    "avif": pyvips.Image.heifload_source,
}
#: Operations libvips keeps for reuse. Its cache holds each load's input buffer and decoded
#: pixels alive after the image is done with; the worker never decodes the same bytes twice, so
#: caching only stretches each image's memory past its own processing.
_CACHED_OPERATIONS = 0
#: libvips' worker threads per pipeline, at most. Its default is one per core, and up to four
#: files are encoded at once, each its own pipeline: on a 64-core host that was 256 threads, each
#: with its buffers and an allocator arena, so memory grew with the machine. The encoders are
#: single-threaded, so more threads feeding each of them would not make it faster.
_MAX_LIBVIPS_THREADS = 4
_hardened = False
_hardening = threading.Lock()


def sniff_format(data: bytes) -> str:
    """Name the format from magic bytes; raise ImageRejectedError for anything not allowlisted."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if len(data) >= 12 and data[4:8] == b"ftyp" and data[8:12] in {b"avif", b"avis"}:
        return "avif"
    if not data:
        raise ImageRejectedError("no image data")
    raise ImageRejectedError("not a JPEG, PNG, WebP or AVIF image (refusing to decode other formats)")


def decode(data: bytes, limits: ImageLimits,
           max_profile_bytes: int = DEFAULT_MAX_PROFILE_BYTES) -> tuple[pyvips.Image, str]:
    """The whole image, in memory as 8-bit sRGB, auto-rotated; and the name of its format."""
    image_format, _, _ = _checked_header(data, limits)
    return _decoded(data, image_format, max_profile_bytes), image_format


def decode_reduced(data: bytes, limits: ImageLimits, shortest_side: int,
                   max_profile_bytes: int = DEFAULT_MAX_PROFILE_BYTES) -> pyvips.Image:
    """The image scaled down so its shortest side is about ``shortest_side`` (never up), in
    memory as 8-bit sRGB, auto-rotated; the full-size pixels are never all in memory at once.

    JPEG and WebP decode at the reduced size already (shrink-on-load); PNG and AVIF stream
    through the reduction a few rows at a time.
    """
    image_format, width, height = _checked_header(data, limits)
    scale = min(1.0, shortest_side / min(width, height))
    options: dict[str, float] = {}
    if image_format == "jpeg":
        # DCT scaling by 2, 4 or 8 while keeping at least shortest_side; the rest below.
        options["shrink"] = max((factor for factor in (1, 2, 4, 8) if factor * scale <= 1.0), default=1)
    elif image_format == "webp":
        options["scale"] = scale
    loader = _LOADERS[image_format]
    try:
        source = pyvips.Source.new_from_memory(data)
        image = to_srgb(loader(source, access="sequential", fail_on="error", **options), max_profile_bytes)
        remaining = shortest_side / min(image.width, image.height)
        if remaining < 1.0:
            image = image.resize(remaining)
        image = image.copy_memory()
    except pyvips.Error as error:
        raise ImageRejectedError(f"corrupt or truncated {image_format}: {first_line(error)}") from None
    return image.autorot()


def first_line(error: pyvips.Error) -> str:
    """The first line of a libvips error, short enough for an error_message column."""
    text = (getattr(error, "detail", "") or str(error)).strip()
    return text.splitlines()[0][:200] if text else "unknown error"


def _checked_header(data: bytes, limits: ImageLimits) -> tuple[str, int, int]:
    harden()
    image_format = sniff_format(data)
    try:
        header = _LOADERS[image_format](pyvips.Source.new_from_memory(data), access="sequential")
    except pyvips.Error as error:
        raise ImageRejectedError(f"corrupt {image_format} header: {first_line(error)}") from None
    limits.check(header.width, header.height)
    return image_format, header.width, header.height


def _decoded(data: bytes, image_format: str, max_profile_bytes: int) -> pyvips.Image:
    loader = _LOADERS[image_format]
    try:
        # One sequential pass: decode, convert to 8-bit sRGB, write to memory. Rotating needs
        # random access, so it runs on the copy in memory, lazily.
        source = pyvips.Source.new_from_memory(data)
        streamed = to_srgb(loader(source, access="sequential", fail_on="error"), max_profile_bytes)
        image = streamed.copy_memory()
    except pyvips.Error as error:
        raise ImageRejectedError(f"corrupt or truncated {image_format}: {first_line(error)}") from None
    return image.autorot()


def harden() -> None:
    """Set libvips up for hostile input, once per process.

    Best called before any thread uses libvips (open_runtime does): the settings are global, and
    blocking the untrusted loaders visits every operation class. Called again from each decode,
    for callers that never open a runtime, it does nothing after the first time; the lock keeps
    two threads' first decodes from doing it at once.
    """
    global _hardened
    if _hardened:
        return
    with _hardening:
        if _hardened:  # another thread did it while this one waited
            return
        # Belt and braces: even if some path reached a generic loader, libvips refuses the
        # loaders it marks untrusted (those built on large, fuzz-prone libraries).
        pyvips.block_untrusted_set(True)
        pyvips.cache_set_max(_CACHED_OPERATIONS)
        if "VIPS_CONCURRENCY" not in os.environ:  # an operator's own choice stands
            pyvips.concurrency_set(min(pyvips.concurrency_get(), _MAX_LIBVIPS_THREADS))
        _hardened = True
