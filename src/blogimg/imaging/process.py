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
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property, partial

import pyvips

from blogimg.errors import ImageRejectedError
from blogimg.imaging.choices import LOSSLESS_WEBP_QUALITY, check, choose, encode_with_budget
from blogimg.imaging.decode import decode, decode_reduced, first_line, sniff_format
from blogimg.imaging.encoder_pool import run_each_then, run_in_encoder_pool
from blogimg.imaging.encoders import encoder_name
from blogimg.imaging.labels import ProvenanceLabel, labelled
from blogimg.imaging.limits import (
    DEFAULT_MAX_ASPECT_RATIO,
    DEFAULT_MAX_PIXELS,
    ImageLimits,
)
from blogimg.imaging.options import ImagingOptions
from blogimg.imaging.quality_balance import Checked
from blogimg.imaging.quality_search import Choice, few_colours

__all__ = ["EncodedFile", "ImagingOptions", "ProcessedImage", "dominant_color", "make_thumbnail",
           "make_variants", "process_image", "safe_load", "sniff_format",
           "thumbnail_window"]

_CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp",
                  "avif": "image/avif"}
_EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp", "avif": "avif"}
#: What a format's search gave: its choice on the probe and (slope mode) the file its check made.
Chosen = tuple[Choice, Checked | None]
#: Slope mode checks each variant format's floor on the variant nearest this width: the width a
#: blog's content column most often shows (and the one the imaging benchmark scores).
CHECK_WIDTH = 768
#: ... and the master's on the master itself, up to this many pixels (scoring costs memory and time
#: in proportion); a larger master is checked on its widest variant within it.
CHECK_MAX_PIXELS = 2048 * 2048
#: A file whose probe scored this far above its floor is not checked: on the benchmark corpus a
#: 768-px WebP or AVIF scored at most 6.2 points below its probe, a full-size JPEG master of small
#: text up to 12.7 (bench/imaging_bound.py, files the probe scores 60 or more).
VARIANT_CHECK_MARGIN, MASTER_CHECK_MARGIN = 7.0, 13.0


@dataclass(frozen=True)
class EncodedFile:
    """One encoded file ready to store."""

    role: str  #: "master", "variant" or "thumbnail"
    format: str  #: "jpeg", "png", "webp" or "avif"
    width: int
    height: int
    data: bytes = field(repr=False)
    quality: int | None = None  #: the encoder quality it was made at; None: lossless (PNG, WebP lossless)
    score: float | None = None  #: SSIMULACRA2 against the source at this size, where measured
    encoder: str | None = None  #: "jpegli", "mozjpeg", "libwebp", "libwebp-lossless", "libaom", "libpng"

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
    master_format = "png" if image.hasalpha() else "jpeg"
    sized = list(_widths(image, options.variant_widths, options.max_variant_pixels))
    searched = _searched_formats(options, master_format)
    try:
        probe, flat = _probe(sized, image, searched)
    except pyvips.Error as error:
        raise ImageRejectedError(f"image could not be encoded: {first_line(error)}") from None
    # Each file is one libvips pipeline over the decoded pixels, encoded side by side on the
    # encoder pool (encoder_pool.py): first the searches (one per format) beside the small files,
    # and each format's files as soon as its own search has chosen their quality.
    small: list[Callable[[], object]] = [
        lambda: _encode(_thumbnail(image, options.thumbnail_size, focus), "webp", options, role="thumbnail"),
        lambda: _lqip(image),
        lambda: dominant_color(image),
    ]
    every_format = list(dict.fromkeys([*options.variant_formats, master_format]))
    unsearched = [image_format for image_format in every_format if image_format not in searched]

    def files_of(image_format: str | None, chosen: Chosen | None) -> list[Callable[[], EncodedFile]]:
        """One format's files (None: every format not searched): the widest variants first, as
        they take longest and starting them last would leave one thread finishing alone; the
        master last."""
        formats = [image_format] if image_format is not None else unsearched
        return [
            *((lambda resized=resized, variant_format=variant_format:
               _final(resized, variant_format, options, "variant", chosen, probe))
              for resized in reversed(sized) for variant_format in formats
              if variant_format in options.variant_formats),
            *([lambda: _final(image, master_format, options, "master", chosen, probe)]
              if master_format in formats else []),
        ]

    try:
        if searched:
            # The key None stands for the formats no search chooses for (a PNG master of an image
            # with alpha): their files start at once.
            searches: dict[str | None, Callable[[], Chosen | None]] = {
                image_format: partial(_choose_and_check, probe, image_format, options, flat,
                                      _check_image(image, sized, image_format, master_format),
                                      master=image_format == master_format)
                for image_format in searched}
            if unsearched:
                searches[None] = lambda: None
            _, files, (thumbnail, lqip, colour) = run_each_then(searches, files_of, small, options.threads)
        else:  # every file at its fixed quality, in one round, the small ones last
            *files, thumbnail, lqip, colour = run_in_encoder_pool([*files_of(None, None), *small],
                                                                  options.threads)
    except pyvips.Error as error:
        raise ImageRejectedError(f"image could not be encoded: {first_line(error)}") from None
    master = next(file for file in files if file.role == "master")
    variants = [file for file in files if file.role == "variant"]
    variants.sort(key=lambda file: (file.width, options.variant_formats.index(file.format)))
    return ProcessedImage(master=master, variants=tuple(variants), thumbnail=thumbnail, lqip=lqip,
                          dominant_color=colour, source_format=source_format, bytes_in=len(data))


def _probe(sized: list[pyvips.Image], image: pyvips.Image, searched: list[str]) -> tuple[pyvips.Image, bool]:
    """The search's probe, the narrowest of ``sized`` (replaced there by its copy in memory, which
    every trial of every search reads), and whether it is flat art."""
    if searched and sized[0] is not image:
        sized[0] = sized[0].copy_memory()
    return sized[0], few_colours(sized[0]) if searched else False


def _searched_formats(options: ImagingOptions, master_format: str) -> list[str]:
    """The formats whose quality is searched: the variants' and a JPEG master's (a PNG master of an
    image with alpha is lossless)."""
    if options.quality_search == "off":
        return []
    return [f for f in dict.fromkeys([*options.variant_formats, master_format]) if f != "png"]


def _check_image(image: pyvips.Image, sized: list[pyvips.Image], image_format: str,
                 master_format: str) -> pyvips.Image:
    """Where slope mode checks ``image_format``'s floor: the master itself (within
    CHECK_MAX_PIXELS) for the master's format, else the variant nearest CHECK_WIDTH."""
    if image_format == master_format:
        if image.width * image.height <= CHECK_MAX_PIXELS:
            return image
        return max((s for s in sized if s.width * s.height <= CHECK_MAX_PIXELS), key=lambda s: s.width,
                   default=sized[0])
    return min(sized, key=lambda s: (abs(s.width - CHECK_WIDTH), s.width))


def _choose_and_check(probe: pyvips.Image, image_format: str, options: ImagingOptions, flat: bool,
                      check_image: pyvips.Image, *, master: bool) -> Chosen:
    """The search's choice on the probe, then (slope mode) its floor checked on ``check_image``."""
    choice = choose(probe, image_format, options, flat=flat)
    margin = MASTER_CHECK_MARGIN if master else VARIANT_CHECK_MARGIN
    return choice, check(check_image, image_format, choice, options, probe=probe, margin=margin)


def _final(image: pyvips.Image, image_format: str, options: ImagingOptions, role: str,
           chosen: Chosen | None, probe: pyvips.Image) -> EncodedFile:
    """One file at the quality the search chose (the fixed quality without one). The search's own
    files are kept, not encoded again: the probe's last trial, and the file its check made."""
    if chosen is None:
        return _encode(image, image_format, options, role=role)
    choice, checked = chosen
    if choice.lossless and image_format == "jpeg" and role != "master":
        assert choice.lossy is not None
        choice = choice.lossy  # a PNG may stand in for the JPEG master, never for a JPEG variant
    if choice.lossless:
        lossless_format = "png" if image_format == "jpeg" else image_format
        if image is probe:
            return _file(image, lossless_format, role, choice.data, None, 100.0, lossless=True, options=options)
        data = encode_with_budget(image, lossless_format, LOSSLESS_WEBP_QUALITY, options, lossless=True)
        return _file(image, lossless_format, role, data, None, None, lossless=True, options=options)
    assert choice.quality is not None
    if checked is not None and (image.width, image.height) == (checked.width, checked.height):
        return _file(image, image_format, role, checked.data, checked.quality, checked.score, options=options)
    quality = checked.quality if checked is not None else choice.quality
    if image is probe and quality == choice.quality:
        return _file(image, image_format, role, choice.data, quality, choice.score, options=options)
    data = encode_with_budget(image, image_format, quality, options)
    return _file(image, image_format, role, data, quality, None, options=options)


def _file(image: pyvips.Image, image_format: str, role: str, data: bytes, quality: int | None,
          score: float | None, *, options: ImagingOptions, lossless: bool = False) -> EncodedFile:
    return EncodedFile(role=role, format=image_format, width=image.width, height=image.height, data=data,
                       quality=quality, score=score,
                       encoder=encoder_name(image_format, jpeg_encoder=options.jpeg_encoder, lossless=lossless))


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

    # The quality of each format is searched again, on the same probe as a new image's.
    searched = ([f for f in dict.fromkeys(image_format for image_format, _ in wanted)]
                if options.quality_search != "off" else [])

    def encoder(image_format: str, width: int) -> Callable[[], EncodedFile]:
        # The probe and the check's image are the very images the search scored, so their files
        # are kept, as in process_image.
        resized = next((s for s in sized if s.width == width), None)
        if resized is None:
            resized = image if width == image.width else image.resize(width / image.width)
        return lambda: _final(resized, image_format, options, "variant", choices.get(image_format), probe)

    try:
        sized = list(_widths(image, options.variant_widths, options.max_variant_pixels))
        probe, flat = _probe(sized, image, searched)
        master_format = "png" if image.hasalpha() else "jpeg"
        searches: list[Callable[[], object]] = [
            partial(_choose_and_check, probe, image_format, options, flat,
                    _check_image(image, sized, image_format, master_format), master=image_format == master_format)
            for image_format in searched]
        choices: dict[str, Chosen] = dict(zip(searched, run_in_encoder_pool(searches, options.threads), strict=True))
        work: list[Callable[[], object]] = [encoder(image_format, width)  # widest first, as process_image does
                                            for image_format, width in sorted(wanted, key=lambda pair: -pair[1])]
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
    """One file at the fixed quality of its format (the thumbnail's is 75: it is never searched)."""
    quality = 75 if role == "thumbnail" else options.fixed_quality(image_format)
    data = encode_with_budget(image, image_format, quality, options)
    return _file(image, image_format, role, data, None if image_format == "png" else quality, None, options=options)


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
