"""The encoder settings reach the files: AVIF's chroma subsampling is read back from the file's own
av1C box, and WebP's effort from what libwebp makes of it."""

from __future__ import annotations

import pytest
import pyvips
from pydantic import ValidationError

from blogimg.config import Settings
from blogimg.imaging.encoders import LOSSLESS_WEBP_EFFORT, encode_bytes
from blogimg.imaging.options import ImagingOptions
from blogimg.imaging.process import process_image
from tests.support import photo_like


def photo() -> pyvips.Image:
    return photo_like(320, 240)


def chroma_subsampling(avif: bytes) -> tuple[int, int]:
    """(x, y) from the AV1 codec configuration box: 1 where that direction is subsampled."""
    at = avif.index(b"av1C") + 4
    flags = avif[at + 2]  # tier, high_bitdepth, twelve_bit, monochrome, subsampling x, y, sample position (2)
    return (flags >> 3) & 1, (flags >> 2) & 1


def avif_variants(options: ImagingOptions) -> list[bytes]:
    result = process_image(photo().pngsave_buffer(), options)
    files = [file.data for file in result.variants if file.format == "avif"]
    assert files
    return files


def test_avif_is_4_4_4_by_default_and_4_2_0_when_asked() -> None:
    defaults = ImagingOptions(variant_widths=(160,), variant_formats=("avif",), threads=1, quality_search="off")
    assert {chroma_subsampling(data) for data in avif_variants(defaults)} == {(0, 0)}
    subsampled = ImagingOptions(variant_widths=(160,), variant_formats=("avif",), threads=1, quality_search="off",
                                avif_chroma="4:2:0")
    assert {chroma_subsampling(data) for data in avif_variants(subsampled)} == {(1, 1)}


def test_webp_effort_changes_the_file() -> None:
    made = {}
    for effort in (0, 6):
        options = ImagingOptions(variant_widths=(320,), variant_formats=("webp",), threads=1, quality_search="off",
                                 webp_effort=effort)
        made[effort] = next(file.data for file in process_image(photo().pngsave_buffer(), options).variants)
    assert made[0] != made[6]
    assert len(made[6]) < len(made[0])  # more effort, fewer bytes at the same quality


def test_lossless_webp_keeps_its_own_effort_whatever_webp_effort_says() -> None:
    small = photo().thumbnail_image(96)
    made = {effort: encode_bytes(small, "webp", 100, webp_effort=effort, lossless=True) for effort in (0, 6)}
    assert made[0] == made[6]
    # ... and that effort is LOSSLESS_WEBP_EFFORT, not libwebp's fastest.
    assert made[0] == small.webpsave_buffer(lossless=True, Q=100, effort=LOSSLESS_WEBP_EFFORT, keep="icc,xmp")
    assert made[0] != small.webpsave_buffer(lossless=True, Q=100, effort=0, keep="icc,xmp")


def test_settings_reach_the_options_and_bad_values_are_refused() -> None:
    options = ImagingOptions.from_settings(Settings(webp_effort=4, avif_chroma_subsampling="4:2:0"))
    assert (options.webp_effort, options.avif_chroma) == (4, "4:2:0")
    # Every default is written twice (Settings for users, ImagingOptions for callers such as the
    # benchmark): the two must be the same options, field by field.
    assert ImagingOptions.from_settings(Settings()) == ImagingOptions()
    with pytest.raises(ValidationError):
        Settings(webp_effort=7)
    with pytest.raises(ValidationError):
        Settings(avif_chroma_subsampling="4:2:2")
