"""Untrusted image bytes → optimized master, responsive variants, thumbnail, LQIP, colour.

Provider output is treated as hostile input:

- the format is sniffed from magic bytes and only the JPEG, PNG, WebP and AVIF loaders may run
  (never libvips' loader guessing, which would also accept SVG, PDF, MATLAB and more);
- the pixel count is read from the header and checked *before* any pixel is decoded;
- decoding fails on the first error, so a truncated file is rejected rather than half-grey;
- every metadata block (EXIF with GPS, XMP, IPTC, comments) is dropped except the ICC profile,
  which is kept because without it colours shift.

Everything here is synchronous CPU work; the worker runs it in a thread.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import TYPE_CHECKING

import pyvips

from blogimg.errors import ImageRejectedError

if TYPE_CHECKING:
    from blogimg.config import Settings

_KEEP_ICC = pyvips.ForeignKeep.ICC
_MAX_SIDE = 16_384
_CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp",
                  "avif": "image/avif"}
_EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp", "avif": "avif"}
_hardened = False


@dataclass(frozen=True, slots=True)
class ImagingOptions:
    """How images are encoded; built from Settings so tests can vary one thing at a time."""

    max_pixels: int = 50_000_000
    variant_widths: tuple[int, ...] = (480, 768, 1024, 1536)
    variant_formats: tuple[str, ...] = ("avif", "webp")
    jpeg_quality: int = 85
    webp_quality: int = 80
    avif_quality: int = 50
    avif_effort: int = 4
    thumbnail_size: int = 300
    threads: int = 0  #: files of one image encoded at once; 0: one per core, at most 4

    @classmethod
    def from_settings(cls, settings: Settings) -> ImagingOptions:
        return cls(
            threads=settings.imaging_threads,
            max_pixels=settings.max_pixels,
            variant_widths=tuple(sorted(set(settings.variant_widths))),
            variant_formats=tuple(dict.fromkeys(settings.variant_formats)),
            jpeg_quality=settings.jpeg_quality,
            webp_quality=settings.webp_quality,
            avif_quality=settings.avif_quality,
            avif_effort=settings.avif_effort,
            thumbnail_size=settings.thumbnail_size,
        )


@dataclass(frozen=True)
class EncodedFile:
    """One encoded file ready to store."""

    role: str  #: "master", "variant" or "thumbnail"
    format: str  #: "jpeg", "png", "webp" or "avif"
    width: int
    height: int
    data: bytes = field(repr=False)

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def content_type(self) -> str:
        return _CONTENT_TYPES[self.format]

    @property
    def extension(self) -> str:
        return _EXTENSIONS[self.format]

    @property
    def storage_key(self) -> str:
        """Content-addressed key: the same bytes always land on the same key."""
        digest = self.sha256
        return f"{digest[:2]}/{digest[2:4]}/{digest}.{self.extension}"


@dataclass(frozen=True, slots=True)
class ProcessedImage:
    """Everything made from one provider image."""

    master: EncodedFile
    variants: tuple[EncodedFile, ...]
    thumbnail: EncodedFile
    lqip: str  #: a data: URI of a tiny WebP, shown blurred while the real image loads
    dominant_color: str  #: "#rrggbb"
    source_format: str
    bytes_in: int

    @property
    def files(self) -> tuple[EncodedFile, ...]:
        return (self.master, *self.variants, self.thumbnail)


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


_LOADERS: dict[str, Callable[..., pyvips.Image]] = {
    "jpeg": pyvips.Image.jpegload_buffer,
    "png": pyvips.Image.pngload_buffer,
    "webp": pyvips.Image.webpload_buffer,
    "avif": pyvips.Image.heifload_buffer,
}


def safe_load(data: bytes, max_pixels: int) -> tuple[pyvips.Image, str]:
    """Decode ``data`` fully into memory after checking format and size; auto-rotated."""
    _harden()
    image_format = sniff_format(data)
    loader = _LOADERS[image_format]
    try:
        header = loader(data, access="sequential")
        width, height = header.width, header.height
    except pyvips.Error as error:
        raise ImageRejectedError(f"corrupt {image_format} header: {_first_line(error)}") from None
    if width > _MAX_SIDE or height > _MAX_SIDE or width * height > max_pixels:
        raise ImageRejectedError(
            f"image is {width}×{height} = {width * height:,} pixels, over the limit of "
            f"{max_pixels:,} pixels and {_MAX_SIDE} per side"
        )
    try:
        image = loader(data, access="random", fail_on="error").autorot().copy_memory()
    except pyvips.Error as error:
        raise ImageRejectedError(f"corrupt or truncated {image_format}: {_first_line(error)}") from None
    return _to_srgb(image), image_format


def process_image(data: bytes, options: ImagingOptions = ImagingOptions(),
                  focus: Sequence[float] | None = None) -> ProcessedImage:
    """Make the master, variants, thumbnail, LQIP and dominant colour of one image.

    ``focus`` is what the thumbnail's crop must keep, in fractions (0..1) of the width and height:
    a box ``(left, top, right, bottom)`` (a provider's ``ProviderImage.focus``) or a point
    ``(x, y)`` (an image's focal point). Without it libvips' attention crop guesses.
    """
    image, source_format = safe_load(data, options.max_pixels)
    if image.hasalpha() and image[image.bands - 1].min() >= 255:
        image = image.flatten()  # an alpha band that is fully opaque only costs bytes
    has_alpha = image.hasalpha()
    # Each file is one libvips pipeline over the decoded pixels, and the encoders (libjpeg, libwebp,
    # libaom) are mostly single-threaded: encoding the files side by side uses every core for one
    # image, where one after another leaves the others idle. libvips releases the GIL throughout.
    # The widest variants go first: they take longest, and starting them last would leave one
    # thread finishing alone.
    variant_work = [
        (lambda resized=resized, image_format=image_format: _encode(resized, image_format, options, role="variant"))
        for resized in reversed(list(_widths(image, options.variant_widths)))
        for image_format in options.variant_formats
    ]
    work = [
        *variant_work,
        lambda: _encode(image, "png" if has_alpha else "jpeg", options, role="master"),
        lambda: _encode(_thumbnail(image, options.thumbnail_size, focus), "webp", options,
                        role="thumbnail"),
        lambda: _lqip(image),
        lambda: dominant_color(image),
    ]
    try:
        results = _run_all(work, options.threads)
    except pyvips.Error as error:
        raise ImageRejectedError(f"image could not be encoded: {_first_line(error)}") from None
    *variants, master, thumbnail, lqip, colour = results
    variants.sort(key=lambda file: (file.width, options.variant_formats.index(file.format)))
    return ProcessedImage(master=master, variants=tuple(variants), thumbnail=thumbnail, lqip=lqip,
                          dominant_color=colour, source_format=source_format, bytes_in=len(data))


def make_thumbnail(data: bytes, options: ImagingOptions, focus: Sequence[float] | None) -> EncodedFile:
    """The thumbnail alone, from a stored master: for a focal point set after the image was made."""
    image, _ = safe_load(data, options.max_pixels)
    try:
        return _encode(_thumbnail(image, options.thumbnail_size, focus), "webp", options, role="thumbnail")
    except pyvips.Error as error:
        raise ImageRejectedError(f"thumbnail could not be made: {_first_line(error)}") from None


def thumbnail_window(width: int, height: int, focus: Sequence[float]) -> tuple[int, int, int, int]:
    """The part of a ``width``×``height`` image the square thumbnail shows: left, top,
    width, height. It is as large as the image allows, centred on ``focus`` (a box or point in
    fractions, see process_image) and moved only as far as needed to stay on the image, so a
    focus box that fits is kept whole."""
    if len(focus) == 2:
        focus = (focus[0], focus[1], focus[0], focus[1])
    if len(focus) != 4:
        raise ValueError("focus is (x, y) or (left, top, right, bottom)")
    left, top, right, bottom = (min(1.0, max(0.0, float(value))) for value in focus)
    side = min(width, height)  # the thumbnail is square
    centre_x = (min(left, right) + max(left, right)) / 2 * width
    centre_y = (min(top, bottom) + max(top, bottom)) / 2 * height
    x = min(max(0, round(centre_x - side / 2)), width - side)
    y = min(max(0, round(centre_y - side / 2)), height - side)
    return x, y, side, side


def _thumbnail(image: pyvips.Image, size: int, focus: Sequence[float] | None) -> pyvips.Image:
    if focus is None:
        return image.thumbnail_image(size, height=size, crop="attention", size="both")
    x, y, width, height = thumbnail_window(image.width, image.height, focus)
    window = image.extract_area(x, y, width, height)
    return window.thumbnail_image(size, height=size, crop="centre", size="both")


def dominant_color(image: pyvips.Image) -> str:
    """The most common colour, as ``#rrggbb``, from a 32-pixel sketch in 4-bit buckets."""
    sketch = image.thumbnail_image(32)
    if sketch.hasalpha():
        sketch = sketch.flatten(background=[255, 255, 255])
    if sketch.bands < 3:
        sketch = sketch.colourspace("srgb")
    sketch = sketch.extract_band(0, n=3).cast("uchar")
    pixels = sketch.write_to_memory()
    triples = [tuple(pixels[index : index + 3]) for index in range(0, len(pixels), 3)]
    buckets = Counter((r >> 4, g >> 4, b >> 4) for r, g, b in triples)
    winner = buckets.most_common(1)[0][0]
    members = [pixel for pixel in triples if (pixel[0] >> 4, pixel[1] >> 4, pixel[2] >> 4) == winner]
    mean = [round(sum(channel) / len(members)) for channel in zip(*members, strict=True)]
    return "#{:02x}{:02x}{:02x}".format(*mean)


def _encode(image: pyvips.Image, image_format: str, options: ImagingOptions, *, role: str) -> EncodedFile:
    if image_format == "jpeg":
        flat = image.flatten(background=[255, 255, 255]) if image.hasalpha() else image
        # mozjpeg's settings: trellis quantisation, deringing, optimised progressive scans and
        # the quantisation table tuned for perceived quality; ~10% smaller at the same quality.
        data = flat.jpegsave_buffer(Q=options.jpeg_quality, optimize_coding=True, interlace=True,
                                    trellis_quant=True, overshoot_deringing=True,
                                    optimize_scans=True, quant_table=3, keep=_KEEP_ICC)
    elif image_format == "png":
        data = image.pngsave_buffer(compression=9, keep=_KEEP_ICC)
    elif image_format == "webp":
        quality = 75 if role == "thumbnail" else options.webp_quality
        data = image.webpsave_buffer(Q=quality, effort=4, smart_subsample=True, keep=_KEEP_ICC)
    elif image_format == "avif":
        data = image.heifsave_buffer(Q=options.avif_quality, compression="av1",
                                     effort=options.avif_effort, keep=_KEEP_ICC)
    else:
        raise ValueError(f"unknown output format {image_format!r}")
    return EncodedFile(role=role, format=image_format, width=image.width, height=image.height,
                       data=data)


def _run_all(work: list[Callable[[], object]], threads: int) -> list:
    """Results of ``work`` in order; the first error is raised after every task has ended."""
    pool = _pool(threads or min(4, os.cpu_count() or 1))
    if pool is None:
        return [task() for task in work]
    futures = [pool.submit(task) for task in work]
    wait(futures)  # never leave a task running on pixels the caller is about to drop
    return [future.result() for future in futures]


@cache
def _pool(threads: int) -> ThreadPoolExecutor | None:
    # One pool per size for the whole process, shared by concurrent jobs: the number of encoder
    # threads stays bounded however many images the worker has in flight.
    return None if threads <= 1 else ThreadPoolExecutor(threads, thread_name_prefix="blogimg-encode")


def _widths(image: pyvips.Image, widths: tuple[int, ...]):
    # Never upscale: every configured width below the original, plus the original itself.
    for width in sorted({w for w in widths if w < image.width} | {image.width}):
        yield image if width == image.width else image.resize(width / image.width)


def _lqip(image: pyvips.Image) -> str:
    tiny = image.thumbnail_image(20)
    data = tiny.webpsave_buffer(Q=40, effort=4, keep=pyvips.ForeignKeep.NONE)
    return "data:image/webp;base64," + base64.b64encode(data).decode("ascii")


def _to_srgb(image: pyvips.Image) -> pyvips.Image:
    interpretation = image.interpretation
    if interpretation == "srgb" and image.format == "uchar":
        return image
    if interpretation in {"b-w"} and image.format == "uchar":
        return image  # grey stays grey: a third of the bytes, same look
    if interpretation == "cmyk" and image.get_typeof("icc-profile-data"):
        # Convert with the embedded profile, then drop it: the pixels are sRGB now.
        converted = image.icc_transform("srgb", embedded=True)
        converted.remove("icc-profile-data")
        return converted.cast("uchar")
    return image.colourspace("srgb").cast("uchar")


def _harden() -> None:
    global _hardened
    if not _hardened:
        # Belt and braces: even if some path reached a generic loader, libvips refuses the
        # loaders it marks untrusted (those built on large, fuzz-prone libraries).
        pyvips.block_untrusted_set(True)
        _hardened = True


def _first_line(error: pyvips.Error) -> str:
    text = (getattr(error, "detail", "") or str(error)).strip()
    return text.splitlines()[0][:200] if text else "unknown error"
