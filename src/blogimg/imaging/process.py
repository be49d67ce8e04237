"""Untrusted image bytes → optimized master, responsive variants, thumbnail, LQIP, colour.

Provider output is hostile input: decode.py checks its format and shape (limits.py) before
decoding it to 8-bit sRGB (colour_profile.py). Every metadata block (EXIF with GPS, XMP, IPTC,
comments) is dropped; an ICC profile survives only if it is a small sRGB one, since every other
profile has been applied to the pixels already. The one thing added is blogimg's own provenance
label, an XMP packet saying how the image was made and by which provider and model (labels.py).

Everything here is synchronous CPU work; the worker runs it in a thread.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import TYPE_CHECKING

import pyvips

from blogimg.errors import ImageRejectedError
from blogimg.imaging.colour_profile import DEFAULT_MAX_PROFILE_BYTES
from blogimg.imaging.decode import decode, decode_reduced, first_line, sniff_format
from blogimg.imaging.encoder_memory import DEFAULT_BUDGET_BYTES, estimate, shared_budget
from blogimg.imaging.labels import XMP_FIELD, ProvenanceLabel, add_png_xmp, labelled
from blogimg.imaging.limits import (
    DEFAULT_MAX_ASPECT_RATIO,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_VARIANT_PIXELS,
    ImageLimits,
)

if TYPE_CHECKING:
    from blogimg.config import Settings

__all__ = ["EncodedFile", "ImagingOptions", "ProcessedImage", "dominant_color", "make_thumbnail",
           "make_variants", "process_image", "run_in_encoder_pool", "safe_load", "sniff_format",
           "thumbnail_window"]

# XMP is kept only because labelled() has replaced whatever XMP the image had with blogimg's
# label (or removed it): nothing of the provider's survives.
_KEEP = pyvips.ForeignKeep.ICC | pyvips.ForeignKeep.XMP
#: libvips' PNG saver (8.18) writes XMP too, as a zTXt chunk that few readers look for; a PNG gets
#: its one packet as the iTXt chunk the XMP specification names instead (add_png_xmp), so no XMP here.
_KEEP_PNG = pyvips.ForeignKeep.ICC
_CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp",
                  "avif": "image/avif"}
_EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp", "avif": "avif"}


@dataclass(frozen=True, slots=True)
class ImagingOptions:
    """How images are encoded; built from Settings so tests can vary one thing at a time."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO  #: longest side over shortest
    max_icc_profile_bytes: int = DEFAULT_MAX_PROFILE_BYTES  #: largest sRGB profile kept in files
    variant_widths: tuple[int, ...] = (480, 768, 1024, 1536)
    max_variant_pixels: int = DEFAULT_MAX_VARIANT_PIXELS  #: the largest variant; the master keeps all
    variant_formats: tuple[str, ...] = ("avif", "webp")
    jpeg_quality: int = 85
    webp_quality: int = 80
    avif_quality: int = 50
    avif_effort: int = 4
    thumbnail_size: int = 300
    threads: int = 0  #: files of one image encoded at once; 0: one per core, at most 4
    encoder_memory_bytes: int = DEFAULT_BUDGET_BYTES  #: held by all encoders at once, process-wide
    provenance_labels: bool = True  #: every file says in XMP how it was made (labels.py)

    @classmethod
    def from_settings(cls, settings: Settings) -> ImagingOptions:
        return cls(
            threads=settings.imaging_threads,
            encoder_memory_bytes=settings.imaging_encoder_memory_mb * 1024 * 1024,
            max_pixels=settings.max_pixels,
            max_aspect_ratio=settings.max_aspect_ratio,
            max_icc_profile_bytes=settings.max_icc_profile_bytes,
            variant_widths=tuple(sorted(set(settings.variant_widths))),
            max_variant_pixels=settings.max_variant_pixels,
            variant_formats=tuple(dict.fromkeys(settings.variant_formats)),
            jpeg_quality=settings.jpeg_quality,
            webp_quality=settings.webp_quality,
            avif_quality=settings.avif_quality,
            avif_effort=settings.avif_effort,
            thumbnail_size=settings.thumbnail_size,
            provenance_labels=settings.provenance_labels,
        )

    @property
    def limits(self) -> ImageLimits:
        return ImageLimits(max_pixels=self.max_pixels, max_aspect_ratio=self.max_aspect_ratio)


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


def safe_load(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS,
              max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO) -> tuple[pyvips.Image, str]:
    """Decode ``data`` into memory as 8-bit sRGB after checking format and shape; auto-rotated."""
    return decode(data, ImageLimits(max_pixels=max_pixels, max_aspect_ratio=max_aspect_ratio))


def process_image(data: bytes, options: ImagingOptions = ImagingOptions(),
                  focus: Sequence[float] | None = None,
                  label: ProvenanceLabel | None = None) -> ProcessedImage:
    """Make the master, variants, thumbnail, LQIP and dominant colour of one image.

    ``focus`` is what the thumbnail's crop must keep, in fractions (0..1) of the width and height:
    a box ``(left, top, right, bottom)`` (a provider's ``ProviderImage.focus``) or a point
    ``(x, y)`` (an image's focal point). Without it libvips' attention crop guesses.

    ``label`` names the provider and model of a provider's image; without one (a stored master
    made again) the master's own label is kept. With ``options.provenance_labels`` off, no file
    carries any.
    """
    image, source_format = decode(data, options.limits, options.max_icc_profile_bytes)
    if image.hasalpha() and image[image.bands - 1].min() >= 255:
        image = image.flatten()  # an alpha band that is fully opaque only costs bytes
    image = labelled(image, options.provenance_labels, label)
    has_alpha = image.hasalpha()
    # Each file is one libvips pipeline over the decoded pixels, and the encoders (libjpeg, libwebp,
    # libaom) are mostly single-threaded: encoding the files side by side uses every core for one
    # image, where one after another leaves the others idle. libvips releases the GIL throughout.
    # The widest variants go first: they take longest, and starting them last would leave one
    # thread finishing alone.
    variant_work = [
        (lambda resized=resized, image_format=image_format: _encode(resized, image_format, options, role="variant"))
        for resized in reversed(list(_widths(image, options.variant_widths, options.max_variant_pixels)))
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
        results = run_in_encoder_pool(work, options.threads)
    except pyvips.Error as error:
        raise ImageRejectedError(f"image could not be encoded: {first_line(error)}") from None
    *variants, master, thumbnail, lqip, colour = results
    variants.sort(key=lambda file: (file.width, options.variant_formats.index(file.format)))
    return ProcessedImage(master=master, variants=tuple(variants), thumbnail=thumbnail, lqip=lqip,
                          dominant_color=colour, source_format=source_format, bytes_in=len(data))


def make_thumbnail(data: bytes, options: ImagingOptions, focus: Sequence[float] | None) -> EncodedFile:
    """The thumbnail alone, from a stored master: for a focal point set after the image was made.

    Only a reduced decode is needed (shrink-on-load), never the master's full size.
    """
    image = decode_reduced(data, options.limits, options.thumbnail_size, options.max_icc_profile_bytes)
    image = labelled(image, options.provenance_labels)  # the master's own label
    try:
        return _encode(_thumbnail(image, options.thumbnail_size, focus), "webp", options, role="thumbnail")
    except pyvips.Error as error:
        raise ImageRejectedError(f"thumbnail could not be made: {first_line(error)}") from None


def make_variants(data: bytes, options: ImagingOptions,
                  wanted: Collection[tuple[str, int]]) -> tuple[EncodedFile, ...]:
    """Only the variants ``wanted`` ((format, width) pairs) of a stored master, encoded as
    process_image encodes them: for settings that now ask for widths or formats an image was made
    without (pipeline/remake_variants.py). A width is never above the master's own."""
    image, _ = decode(data, options.limits, options.max_icc_profile_bytes)
    if image.hasalpha() and image[image.bands - 1].min() >= 255:
        image = image.flatten()  # as process_image does, so the files match what a new image gets
    image = labelled(image, options.provenance_labels)  # the master's own label
    if any(width > image.width for _, width in wanted):
        raise ImageRejectedError(f"a {image.width} px master has no variant wider than itself")

    def encoder(image_format: str, width: int) -> Callable[[], EncodedFile]:
        resized = image if width == image.width else image.resize(width / image.width)
        return lambda: _encode(resized, image_format, options, role="variant")

    work: list[Callable[[], object]] = [encoder(image_format, width)  # widest first, as process_image does
                                        for image_format, width in sorted(wanted, key=lambda pair: -pair[1])]
    try:
        return tuple(sorted(run_in_encoder_pool(work, options.threads), key=lambda file: (file.width, file.format)))
    except pyvips.Error as error:
        raise ImageRejectedError(f"variants could not be encoded: {first_line(error)}") from None


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
    needed = estimate(image_format, image.width, image.height, has_alpha=image.hasalpha())
    with shared_budget(options.encoder_memory_bytes).reserve(needed):
        data = _encoded_bytes(image, image_format, options, role=role)
    return EncodedFile(role=role, format=image_format, width=image.width, height=image.height,
                       data=data)


def _encoded_bytes(image: pyvips.Image, image_format: str, options: ImagingOptions, *, role: str) -> bytes:
    if image_format == "jpeg":
        flat = image.flatten(background=[255, 255, 255]) if image.hasalpha() else image
        # mozjpeg's settings: trellis quantisation, deringing, optimised progressive scans and
        # the quantisation table tuned for perceived quality; ~10% smaller at the same quality.
        data = flat.jpegsave_buffer(Q=options.jpeg_quality, optimize_coding=True, interlace=True,
                                    trellis_quant=True, overshoot_deringing=True,
                                    optimize_scans=True, quant_table=3, keep=_KEEP)
    elif image_format == "png":
        data = image.pngsave_buffer(compression=9, keep=_KEEP_PNG)
        if image.get_typeof(XMP_FIELD):  # one packet, in iTXt: see _KEEP_PNG
            data = add_png_xmp(data, image.get(XMP_FIELD))
    elif image_format == "webp":
        quality = 75 if role == "thumbnail" else options.webp_quality
        data = image.webpsave_buffer(Q=quality, effort=4, smart_subsample=True, keep=_KEEP)
    elif image_format == "avif":
        data = image.heifsave_buffer(Q=options.avif_quality, compression="av1",
                                     effort=options.avif_effort, keep=_KEEP)
    else:
        raise ValueError(f"unknown output format {image_format!r}")
    return data


def run_in_encoder_pool(work: list[Callable[[], object]], threads: int) -> list:
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


def _widths(image: pyvips.Image, widths: tuple[int, ...], max_pixels: int) -> Iterator[pyvips.Image]:
    # Never upscale: every configured width below the original, plus the original itself, unless
    # it is over max_pixels: then it is scaled to fit (see limits.DEFAULT_MAX_VARIANT_PIXELS).
    largest = largest_variant_width(image.width, image.height, max_pixels)
    for width in sorted({w for w in widths if w < largest} | {largest}):
        yield image if width == image.width else image.resize(width / image.width)


def largest_variant_width(width: int, height: int, max_pixels: int) -> int:
    """The widest variant of a ``width``×``height`` image: its own width while it has at most
    ``max_pixels`` pixels, else the width that scales it down to them."""
    if width * height <= max_pixels:
        return width
    return max(1, math.floor(width * math.sqrt(max_pixels / (width * height))))


def _lqip(image: pyvips.Image) -> str:
    tiny = image.thumbnail_image(20)
    data = tiny.webpsave_buffer(Q=40, effort=4, keep=pyvips.ForeignKeep.NONE)
    return "data:image/webp;base64," + base64.b64encode(data).decode("ascii")
