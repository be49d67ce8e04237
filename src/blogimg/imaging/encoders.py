"""The encoders: pixels → the bytes of one JPEG, PNG, WebP or AVIF file at a given quality.

JPEG has two: mozjpeg (libvips' JPEG saver with trellis quantisation, deringing and optimised
progressive scans) and jpegli (libjxl's JPEG encoder, through ``pyjpegli``). Matched image by image
to the same SSIMULACRA2 on the benchmark corpus, jpegli's files were 7% larger overall and 35%
larger on flat `card` art, so mozjpeg is the default; jpegli encodes an order of magnitude faster,
for those who would rather spend less CPU.

What every file carries is decided before: labels.py has left at most blogimg's own XMP label on
the image, and colour_profile.py at most a small sRGB profile. libvips writes both where asked
(``keep``); jpegli writes neither, so its files get the label's XMP (APP1) and the profile (APP2) as
segments here.
"""

from __future__ import annotations

import struct
from functools import cache
from types import ModuleType

import pyvips

from blogimg.imaging.labels import XMP_FIELD, add_png_xmp

__all__ = ["ENCODER_NAMES", "add_jpeg_xmp", "encode_bytes", "encoder_name", "jpegli_available"]

# XMP is kept only because labelled() has replaced whatever XMP the image had with blogimg's
# label (or removed it): nothing of the provider's survives.
_KEEP = pyvips.ForeignKeep.ICC | pyvips.ForeignKeep.XMP
#: libvips' PNG saver (8.18) writes XMP too, as a zTXt chunk that few readers look for; a PNG gets
#: its one packet as the iTXt chunk the XMP specification names instead (add_png_xmp), so no XMP here.
_KEEP_PNG = pyvips.ForeignKeep.ICC
_XMP_SIGNATURE = b"http://ns.adobe.com/xap/1.0/\x00"
_ICC_SIGNATURE = b"ICC_PROFILE\x00"  #: then chunk number and count: one chunk of one
_ICC_FIELD = "icc-profile-data"
#: What each format's files are made by, as stored beside each file (image_variants.encoder).
ENCODER_NAMES = {"webp": "libwebp", "avif": "libaom", "png": "libpng"}
LOSSLESS_WEBP_EFFORT = 4  #: whatever WEBP_EFFORT says, which is lossy WebP's


@cache
def _jpegli() -> ModuleType | None:
    try:
        import pyjpegli
    except ImportError:  # no wheel for this platform: mozjpeg does the JPEGs
        return None
    return pyjpegli


def jpegli_available() -> bool:
    return _jpegli() is not None


def encoder_name(image_format: str, *, jpeg_encoder: str = "mozjpeg", lossless: bool = False) -> str:
    """The name stored for a file of ``image_format`` made with these choices."""
    if image_format == "jpeg":
        return "jpegli" if jpeg_encoder == "jpegli" and jpegli_available() else "mozjpeg"
    name = ENCODER_NAMES[image_format]
    return f"{name}-lossless" if lossless and image_format == "webp" else name


def encode_bytes(image: pyvips.Image, image_format: str, quality: int, *, jpeg_encoder: str = "mozjpeg",
                 avif_effort: int = 3, webp_effort: int = 6, avif_chroma: str = "4:4:4",
                 lossless: bool = False) -> bytes:
    """One file of ``image`` (8-bit sRGB) in ``image_format`` at ``quality`` (1–100).

    ``lossless`` applies to WebP only: the exact pixels, ``quality`` then being the effort spent
    on compression. A PNG is always lossless; ``quality`` is ignored.

    The defaults were measured at equal SSIMULACRA2 on photographs of the benchmark corpus: WebP
    effort 6 makes files about 4% smaller than effort 4 for about half as much time again on WebP
    (still a fraction of AVIF's), and AVIF without chroma subsampling (4:4:4, sharp's default too)
    about 1.5% smaller than 4:2:0, at about the same speed but 2.3 times the encoder's memory
    (encoder_memory.py reserves it).
    """
    if image_format == "jpeg":
        flat = image.flatten(background=[255, 255, 255]) if image.hasalpha() else image
        if encoder_name("jpeg", jpeg_encoder=jpeg_encoder) == "jpegli":
            return _jpegli_bytes(flat, quality)
        # mozjpeg's settings: trellis quantisation, deringing, optimised progressive scans and
        # the quantisation table tuned for perceived quality; ~10% smaller than libjpeg's defaults.
        return flat.jpegsave_buffer(Q=quality, optimize_coding=True, interlace=True, trellis_quant=True,
                                    overshoot_deringing=True, optimize_scans=True, quant_table=3, keep=_KEEP)
    if image_format == "png":
        data = image.pngsave_buffer(compression=9, keep=_KEEP_PNG)
        if image.get_typeof(XMP_FIELD):  # one packet, in iTXt: see _KEEP_PNG
            data = add_png_xmp(data, image.get(XMP_FIELD))
        return data
    if image_format == "webp":
        if lossless:  # not webp_effort: 6 would cost lossless WebP several times the time for little
            return image.webpsave_buffer(lossless=True, Q=quality, effort=LOSSLESS_WEBP_EFFORT, keep=_KEEP)
        return image.webpsave_buffer(Q=quality, effort=webp_effort, smart_subsample=True, keep=_KEEP)
    if image_format == "avif":
        subsample = "off" if avif_chroma == "4:4:4" else "on"
        return image.heifsave_buffer(Q=quality, compression="av1", effort=avif_effort, subsample_mode=subsample,
                                     keep=_KEEP)
    raise ValueError(f"unknown output format {image_format!r}")


def _jpegli_bytes(image: pyvips.Image, quality: int) -> bytes:
    module = _jpegli()
    assert module is not None  # encoder_name chose jpegli only when it imports
    rgb = image if image.bands == 3 else image.colourspace("srgb").extract_band(0, n=3)
    data = module.encode(rgb.cast("uchar").write_to_memory(), rgb.width, rgb.height, quality)
    if image.get_typeof(_ICC_FIELD):  # only a small sRGB profile is ever left (colour_profile.py)
        data = _add_segment(data, b"\xff\xe2", _ICC_SIGNATURE + b"\x01\x01" + image.get(_ICC_FIELD))
    if image.get_typeof(XMP_FIELD):
        data = add_jpeg_xmp(data, image.get(XMP_FIELD))
    return data


def add_jpeg_xmp(data: bytes, packet: bytes) -> bytes:
    """``data`` (a JPEG) with the XMP ``packet`` as an APP1 segment right after its SOI marker."""
    return _add_segment(data, b"\xff\xe1", _XMP_SIGNATURE + packet)


def _add_segment(data: bytes, marker: bytes, body: bytes) -> bytes:
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG: no SOI marker")
    if len(body) + 2 > 0xFFFF:  # one segment's length field; labels and sRGB profiles are small
        raise ValueError("metadata too large for one JPEG segment")
    return data[:2] + marker + struct.pack(">H", len(body) + 2) + body + data[2:]
