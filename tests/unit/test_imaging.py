"""Imaging: formats and sizes, metadata stripped but ICC kept, hostile input rejected."""

from __future__ import annotations

import base64
import dataclasses
import time

import pytest
import pyvips

from blogimg.errors import ImageRejectedError
from blogimg.imaging.process import ImagingOptions, process_image, sniff_format

FAST = ImagingOptions(variant_widths=(200, 400, 800), avif_effort=0)


def photo_like(width: int, height: int, *, bands: int = 3) -> pyvips.Image:
    """A test image with structure (gradients and a bright block) so smart crop and codecs have work."""
    xyz = pyvips.Image.xyz(width, height)
    red = (xyz[0] * 255 / max(width - 1, 1))
    green = (xyz[1] * 255 / max(height - 1, 1))
    blue = ((xyz[0] + xyz[1]) % 64) * 4
    image = red.bandjoin([green, blue]).cast("uchar").copy(interpretation="srgb")
    image = image.draw_rect([255, 255, 255], width * 3 // 4, height // 4, width // 8, height // 8, fill=True)
    if bands == 4:
        alpha = (xyz[0] * 255 / max(width - 1, 1)).cast("uchar")
        image = image.bandjoin(alpha)
    return image


def with_metadata(image: pyvips.Image) -> pyvips.Image:
    image = image.icc_transform("srgb").cast("uchar").copy()  # attaches libvips' sRGB profile
    image.set_type(pyvips.GValue.blob_type, "xmp-data", b'<x:xmpmeta xmlns:x="adobe:ns:meta/">secret</x:xmpmeta>')
    image.set_type(pyvips.GValue.gstr_type, "exif-ifd0-Artist", "Secret Person")
    return image


def decode(data: bytes) -> pyvips.Image:
    return pyvips.Image.new_from_buffer(data, "")


def mean_difference(first: pyvips.Image, second: pyvips.Image) -> float:
    return (first.extract_band(0, n=3).cast("float") - second.extract_band(0, n=3).cast("float")).abs().avg()


def test_output_formats_and_sizes() -> None:
    source = photo_like(1536, 1024)
    result = process_image(source.pngsave_buffer(), FAST)
    assert (result.master.format, result.master.width, result.master.height) == ("jpeg", 1536, 1024)
    assert sniff_format(result.master.data) == "jpeg"
    produced = sorted((f.format, f.width, f.height) for f in result.variants)
    expected = sorted((fmt, w, round(w * 1024 / 1536)) for w in (200, 400, 800, 1536) for fmt in ("avif", "webp"))
    assert produced == expected
    for variant in result.variants:
        assert sniff_format(variant.data) == variant.format
        loaded = decode(variant.data)
        assert (loaded.width, loaded.height) == (variant.width, variant.height)
    # The optimised master looks like its source and is much smaller than a lossless copy.
    assert mean_difference(decode(result.master.data), source) < 3.0
    assert len(result.master.data) < len(source.pngsave_buffer()) / 2


@pytest.mark.parametrize(("options", "alpha"), [
    (FAST, False),
    (dataclasses.replace(FAST, quality_search="off"), False),  # no search: one round
    (dataclasses.replace(FAST, variant_formats=("jpeg", "webp")), False),  # JPEG: master and variant
    (FAST, True),  # a PNG master, which no search chooses for, beside searched variants
], ids=["slope", "off", "jpeg-variants", "png-master"])
def test_encoding_side_by_side_gives_the_same_files_in_the_same_order(options: ImagingOptions,
                                                                      alpha: bool) -> None:
    # The encoder pool only changes when each file is made, never what is made or in which order
    # the variants are listed (narrowest first, formats as configured).
    image = photo_like(900, 600)
    if alpha:
        image = image.bandjoin(image[0].linear(0.5, 100).cast("uchar"))
    data = image.pngsave_buffer()
    alone = process_image(data, dataclasses.replace(options, threads=1))
    pooled = process_image(data, dataclasses.replace(options, threads=3))
    assert [(f.role, f.format, f.width, f.sha256) for f in pooled.files] == \
        [(f.role, f.format, f.width, f.sha256) for f in alone.files]
    assert [(f.width, f.format) for f in pooled.variants] == \
        [(w, fmt) for w in (200, 400, 800, 900) for fmt in options.variant_formats]
    assert pooled.master.format == ("png" if alpha else "jpeg")
    assert (pooled.lqip, pooled.dominant_color) == (alone.lqip, alone.dominant_color)


def test_widths_never_exceed_the_original() -> None:
    result = process_image(photo_like(500, 300).pngsave_buffer(), FAST)
    assert sorted({v.width for v in result.variants}) == [200, 400, 500]


def test_metadata_is_stripped_but_icc_profile_kept() -> None:
    source = with_metadata(photo_like(640, 480))
    profile = source.get("icc-profile-data")
    original = source.jpegsave_buffer(Q=95)
    assert decode(original).get_typeof("xmp-data") and decode(original).get_typeof("exif-data")
    result = process_image(original, FAST)
    for file in result.files:
        loaded = decode(file.data)
        fields = set(loaded.get_fields())
        assert not {"xmp-data", "exif-data", "iptc-data"} & fields, (file.role, file.format, fields)
        assert b"Secret Person" not in file.data and b"secret" not in file.data
        if file.role != "thumbnail":
            assert loaded.get("icc-profile-data") == profile, (file.role, file.format)


def test_thumbnail_is_exactly_300_square_for_any_shape() -> None:
    for width, height in [(1536, 1024), (600, 1400), (120, 90)]:
        result = process_image(photo_like(width, height).pngsave_buffer(), FAST)
        thumbnail = decode(result.thumbnail.data)
        assert (thumbnail.width, thumbnail.height) == (300, 300)
        assert result.thumbnail.format == "webp"


def test_attention_crop_keeps_the_interesting_part() -> None:
    # A flat grey canvas with one busy square on the far right: a centre crop would miss it.
    canvas = (pyvips.Image.black(1200, 300, bands=3) + 128).cast("uchar").copy(interpretation="srgb")
    busy = photo_like(200, 200)
    canvas = canvas.insert(busy, 980, 50)
    result = process_image(canvas.pngsave_buffer(), FAST)
    thumbnail = decode(result.thumbnail.data)
    assert thumbnail.deviate() > 20  # a centre crop of this canvas would be flat grey


def test_alpha_keeps_png_master_and_opaque_alpha_is_dropped() -> None:
    translucent = process_image(photo_like(400, 300, bands=4).pngsave_buffer(), FAST)
    assert translucent.master.format == "png" and decode(translucent.master.data).hasalpha()
    opaque = photo_like(400, 300).bandjoin(255).cast("uchar")
    assert process_image(opaque.pngsave_buffer(), FAST).master.format == "jpeg"


def test_auto_rotation_applies_exif_orientation() -> None:
    rotated = photo_like(400, 200).copy()
    rotated.set_type(pyvips.GValue.gint_type, "orientation", 6)
    result = process_image(rotated.jpegsave_buffer(), FAST)
    assert (result.master.width, result.master.height) == (200, 400)
    assert "orientation" not in decode(result.master.data).get_fields()


def test_lqip_and_dominant_colour() -> None:
    red = (pyvips.Image.black(300, 200, bands=3) + [200, 20, 30]).cast("uchar").copy(interpretation="srgb")
    result = process_image(red.pngsave_buffer(), FAST)
    assert result.dominant_color == "#c8141e"
    prefix = "data:image/webp;base64,"
    assert result.lqip.startswith(prefix)
    tiny = decode(base64.b64decode(result.lqip[len(prefix):]))
    assert tiny.width == 20 and len(result.lqip) < 400
    assert result.bytes_in == len(red.pngsave_buffer())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "no image data"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "not a JPEG, PNG, WebP or AVIF"),
        (b"GIF89a" + b"\x00" * 40, "not a JPEG, PNG, WebP or AVIF"),
        (b"%PDF-1.7\n", "not a JPEG, PNG, WebP or AVIF"),
        (b"\x89PNG\r\n\x1a\n" + b"garbage" * 20, "corrupt png"),
    ],
)
def test_non_images_and_corrupt_files_are_rejected(data: bytes, message: str) -> None:
    with pytest.raises(ImageRejectedError, match=message):
        process_image(data, FAST)


def test_truncated_jpeg_is_rejected() -> None:
    whole = photo_like(800, 600).jpegsave_buffer(Q=90)
    with pytest.raises(ImageRejectedError, match="corrupt or truncated jpeg"):
        process_image(whole[: len(whole) // 2], FAST)


def test_over_limit_image_is_rejected_before_decoding() -> None:
    # 20000×20000 of one colour compresses to a few kilobytes: a decompression bomb.
    bomb = pyvips.Image.black(20_000, 20_000).cast("uchar").pngsave_buffer(compression=9)
    assert len(bomb) < 1_000_000
    started = time.process_time()
    with pytest.raises(ImageRejectedError, match="over the limit"):
        process_image(bomb, ImagingOptions(max_pixels=10_000_000))
    # Decoding 400 megapixels takes seconds of CPU; reading the header takes milliseconds.
    assert time.process_time() - started < 0.5
    with pytest.raises(ImageRejectedError, match="over the limit of 1,000 pixels"):
        process_image(photo_like(100, 100).pngsave_buffer(), ImagingOptions(max_pixels=1000))
