"""Every decoded image becomes 8-bit sRGB (or 8-bit grey), and keeps an ICC profile only when cheap.

The web's colour space is sRGB: browsers show an image without a profile as sRGB, and the dominant
colour blogimg stores is a CSS sRGB colour. So, as sharp does by default, pixels described by any
other profile (Display P3, Adobe RGB, a printer's CMYK) are converted to sRGB with that profile and
the profile is dropped: the colours stay right and no file carries it. A profile that describes
sRGB anyway changes nothing, so it is copied into the files only while it is small (the common
ones are 0.5–3 KB); a large one (a 2 MB profile on a 64×64 image made every file 8 MB) is dropped.
A profile lcms cannot read is dropped too: browsers ignore it as well.

Everything here stays lazy: the conversions run while the image is decoded, scanline by scanline,
so a 16-bit image is never held in memory at 16 bits.
"""

from __future__ import annotations

from functools import cache, lru_cache

import pyvips

PROFILE_FIELD = "icc-profile-data"
#: The largest sRGB profile copied into every file made from an image.
DEFAULT_MAX_PROFILE_BYTES = 4096
#: How far (in 8-bit levels) a profile may move the probe colours and still count as sRGB: two
#: sRGB profiles differ by rounding, a wide-gamut one moves saturated colours by tens of levels.
_SRGB_TOLERANCE = 2


def to_srgb(image: pyvips.Image, max_profile_bytes: int = DEFAULT_MAX_PROFILE_BYTES) -> pyvips.Image:
    """``image`` as 8-bit sRGB (8-bit grey stays grey), with its profile kept only if it is a
    small sRGB one; the alpha band, if any, comes along."""
    profile = image.get(PROFILE_FIELD) if image.get_typeof(PROFILE_FIELD) else None
    if profile is not None:
        if not _fits(profile, image):
            image = _without_profile(image)  # lcms would ignore it; so do browsers
        elif (image.interpretation != "cmyk" and len(profile) <= max_profile_bytes
              and _describes_srgb(profile, image.bands)):
            pass  # a small sRGB profile: kept, colours untouched
        else:  # a larger sRGB one converts to nearly the same pixels; asking first would cache its bytes
            image = _convert_with_profile(image)
    return _eight_bit(image)


def _convert_with_profile(image: pyvips.Image) -> pyvips.Image:
    try:
        converted = image.icc_transform("srgb", embedded=True, depth=8)
    except pyvips.Error:
        return _without_profile(image)  # unreadable: show the pixels as they are, as browsers do
    return _without_profile(converted)


def _eight_bit(image: pyvips.Image) -> pyvips.Image:
    interpretation = image.interpretation
    if image.format == "uchar" and interpretation in {"srgb", "b-w"}:
        return image  # grey stays grey: a third of the bytes, same look
    if interpretation in {"grey16", "b-w"}:
        return image.colourspace("b-w").cast("uchar")
    return image.colourspace("srgb").cast("uchar")


def _without_profile(image: pyvips.Image) -> pyvips.Image:
    image = image.copy()  # never change the metadata of an image libvips may share
    if image.get_typeof(PROFILE_FIELD):
        image.remove(PROFILE_FIELD)
    return image


def _fits(profile: bytes, image: pyvips.Image) -> bool:
    """Whether ``profile`` is a whole ICC profile for the image's colour space (the header's
    own size, signature and colour space): libvips silently falls back to sRGB for any other."""
    if len(profile) < 132 or profile[36:40] != b"acsp":
        return False
    if int.from_bytes(profile[:4], "big") != len(profile):
        return False
    expected = {"cmyk": b"CMYK"}.get(image.interpretation, b"RGB " if image.bands >= 3 else b"GRAY")
    return profile[16:20] == expected


@lru_cache(maxsize=16)  # a few profiles recur (the provider's own); only small ones get here
def _describes_srgb(profile: bytes, bands: int) -> bool:
    """Whether converting with ``profile`` leaves sample colours where sRGB has them."""
    probe = _probe(grey=bands < 3)
    tagged = probe.copy()
    tagged.set_type(pyvips.GValue.blob_type, PROFILE_FIELD, profile)
    try:
        # libvips falls back to input_profile when lcms cannot read the embedded one: P3 there
        # makes such a profile fail the test, so it is dropped instead of copied into the files.
        converted = tagged.icc_transform("srgb", embedded=True, input_profile="p3", depth=8)
    except pyvips.Error:
        return False
    expected = probe if probe.bands == converted.bands else probe.bandjoin([probe, probe])
    difference = (converted.cast("int") - expected.cast("int")).abs().max()
    return bool(difference <= _SRGB_TOLERANCE)


@cache
def _probe(*, grey: bool) -> pyvips.Image:
    # Greys, primaries, secondaries and mid-tones: a wide-gamut profile moves the saturated ones,
    # a different tone curve the greys.
    levels = (0, 64, 128, 192, 255)
    if grey:
        pixels = [[level] for level in levels]
        interpretation = "b-w"
    else:
        pixels = [[red, green, blue] for red in levels for green in levels for blue in levels]
        interpretation = "srgb"
    data = bytes(value for pixel in pixels for value in pixel)
    image = pyvips.Image.new_from_memory(data, len(pixels), 1, len(pixels[0]), "uchar")
    return image.copy(interpretation=interpretation).copy_memory()
