"""The per-image quality search (imaging/quality_search.py, choices.py) with the real encoders and
the real metric: what it chooses reaches the target, one step less would not, flat art goes
lossless when that is smaller, and the same image always gets the same files."""

from __future__ import annotations

import pytest
import pyvips

from blogimg.imaging.choices import choose
from blogimg.imaging.encoders import add_jpeg_xmp, encode_bytes
from blogimg.imaging.options import ImagingOptions
from blogimg.imaging.process import process_image
from blogimg.imaging.quality_search import LOWEST, STEP, few_colours, score_file
from tests.support import photo_like

#: Floor mode, which these tests are about (slope mode: test_quality_balance.py).
OPTIONS = ImagingOptions(variant_widths=(160, 320), threads=1, avif_effort=0, quality_search="floor")
TARGET = ImagingOptions(variant_widths=(160, 320), threads=1, avif_effort=0, quality_search="target",
                        jpeg_target_score=78.0, webp_target_score=72.0, avif_target_score=74.0)


def flat_art(width: int, height: int) -> pyvips.Image:
    """A diagram: a few boxes of flat colour with hard edges, as a chart or a logo has."""
    image = pyvips.Image.black(width, height, bands=3) + [245, 245, 240]
    for index, colour in enumerate(([200, 40, 40], [30, 90, 200], [20, 150, 80], [240, 180, 20])):
        box = pyvips.Image.black(width // 5, height // 2, bands=3) + colour
        image = image.insert(box, 10 + index * (width // 4), height // 4)
    return image.cast("uchar")


@pytest.mark.parametrize("image_format", ["jpeg", "webp", "avif"])
def test_the_chosen_quality_reaches_the_target_and_a_step_less_does_not(image_format: str) -> None:
    probe = photo_like(320, 240).copy_memory()
    target = TARGET.target_score(image_format)

    choice = choose(probe, image_format, TARGET, flat=False)

    assert choice.quality is not None
    assert choice.score >= target
    assert score_file(probe, choice.data) == pytest.approx(choice.score)
    assert choice.trials <= 6
    if choice.quality - STEP - 1 >= LOWEST:
        lower = encode_bytes(probe, image_format, choice.quality - STEP - 1, avif_effort=TARGET.avif_effort)
        assert score_file(probe, lower) < target
        assert len(lower) < len(choice.data)


def test_a_higher_target_costs_a_higher_quality_and_more_bytes() -> None:
    probe = photo_like(320, 240).copy_memory()
    modest = choose(probe, "webp", ImagingOptions(quality_search="target", webp_target_score=60.0, threads=1),
                    flat=False)
    demanding = choose(probe, "webp", ImagingOptions(quality_search="target", webp_target_score=85.0, threads=1),
                       flat=False)
    assert modest.quality is not None and demanding.quality is not None
    assert demanding.quality > modest.quality
    assert len(demanding.data) > len(modest.data)
    assert demanding.score >= 85.0 > modest.score


def test_floor_mode_keeps_the_fixed_quality_between_the_floor_and_the_ceiling_with_one_trial() -> None:
    probe = photo_like(320, 240)
    # The target score is target mode's alone: floor mode goes by the floor and the ceiling.
    options = ImagingOptions(threads=1, avif_effort=0, webp_quality=80, floor_score=50.0, ceiling_score=95.0,
                             webp_target_score=99.0, quality_search="floor")
    choice = choose(probe, "webp", options, flat=False)
    assert (choice.quality, choice.trials) == (80, 1)
    assert 50.0 <= choice.score <= 95.0


def test_floor_mode_raises_a_file_below_the_floor_and_lowers_one_above_the_ceiling() -> None:
    probe = photo_like(320, 240)
    strict = ImagingOptions(threads=1, avif_effort=0, webp_quality=20, floor_score=80.0, quality_search="floor")
    raised = choose(probe, "webp", strict, flat=False)
    assert raised.quality is not None and raised.quality > 20 and raised.score >= 80.0

    # A smooth gradient scores near-perfect at a high fixed quality: it comes down to the ceiling.
    gradient = (pyvips.Image.xyz(320, 240)[0] * 0.7 + 20).cast("uchar").bandjoin([80, 160]).copy(interpretation="srgb")
    lenient = ImagingOptions(threads=1, avif_effort=0, webp_quality=98, ceiling_score=80.0, quality_search="floor")
    lowered = choose(gradient.copy_memory(), "webp", lenient, flat=False)
    at_fixed = encode_bytes(gradient, "webp", 98)
    assert lowered.quality is not None and lowered.quality < 98 and lowered.score >= 80.0
    assert len(lowered.data) < len(at_fixed)


def test_flat_art_is_lossless_when_that_is_smaller() -> None:
    art = flat_art(320, 240)
    assert few_colours(art)
    assert not few_colours(photo_like(320, 240))

    result = process_image(art.pngsave_buffer(), OPTIONS)

    webp = [file for file in result.variants if file.format == "webp"]
    assert webp and all(file.encoder == "libwebp-lossless" and file.quality is None for file in webp)
    decoded = pyvips.Image.new_from_buffer(webp[-1].data, "")
    assert decoded.width == art.width and (decoded - art).abs().max() == 0  # exact pixels
    assert result.master.format == "png" and result.master.encoder == "libpng"
    # A lossy AVIF is still searched: it has no lossless mode worth its bytes.
    assert all(file.encoder == "libaom" and file.quality is not None for file in result.variants
               if file.format == "avif")


def test_a_photograph_keeps_lossy_files_and_every_file_says_how_it_was_made() -> None:
    # Tiny files cannot reach every target (WebP's halved chroma caps a 160-px photograph near
    # 71): at 320 px they can.
    options = ImagingOptions(variant_widths=(320, 480), threads=1, avif_effort=0, quality_search="floor")
    result = process_image(photo_like(600, 450).pngsave_buffer(), options)

    assert result.master.format == "jpeg" and result.master.quality is not None
    assert result.master.encoder in {"jpegli", "mozjpeg"}
    for file in result.variants:
        assert file.quality is not None and file.encoder in {"libwebp", "libaom"}
    # The narrowest variant is the probe itself: its score was measured, and it reaches the target.
    for file in (f for f in result.variants if f.width == 320):
        assert file.score is not None and file.score >= options.floor_score
    # Every width of a format shares the quality the probe found.
    for image_format in ("webp", "avif"):
        assert len({f.quality for f in result.variants if f.format == image_format}) == 1


def test_the_same_image_always_gets_the_same_files() -> None:
    data = photo_like(400, 300).pngsave_buffer()
    first, second = process_image(data, OPTIONS), process_image(data, OPTIONS)
    assert [f.sha256 for f in first.files] == [f.sha256 for f in second.files]


def test_without_the_search_the_fixed_qualities_are_used() -> None:
    options = ImagingOptions(variant_widths=(160,), threads=1, avif_effort=0, quality_search="off",
                             webp_quality=61, avif_quality=41, jpeg_quality=71)
    result = process_image(photo_like(400, 300).pngsave_buffer(), options)
    assert {(f.format, f.quality) for f in result.variants} == {("webp", 61), ("avif", 41)}
    assert result.master.quality == 71 and all(f.score is None for f in result.files)


def test_jpeg_xmp_goes_in_one_app1_segment_after_the_start_marker() -> None:
    jpeg = encode_bytes(photo_like(64, 48), "jpeg", 80)
    labelled = add_jpeg_xmp(jpeg, b"<x:xmpmeta/>")
    assert labelled[:4] == b"\xff\xd8\xff\xe1"
    assert pyvips.Image.new_from_buffer(labelled, "").get("xmp-data").startswith(b"<x:xmpmeta/>")
    with pytest.raises(ValueError, match="not a JPEG"):
        add_jpeg_xmp(b"\x89PNG", b"<x/>")


def test_a_jpeg_variant_of_flat_art_stays_a_jpeg_while_the_master_may_be_a_png() -> None:
    options = ImagingOptions(variant_widths=(160, 320), variant_formats=("webp", "jpeg"), threads=1)
    result = process_image(flat_art(320, 240).pngsave_buffer(), options)
    assert result.master.format == "png"
    jpegs = [file for file in result.variants if file.format == "jpeg"]
    assert jpegs and all(file.encoder == "mozjpeg" and file.quality is not None for file in jpegs)
    assert all(pyvips.Image.new_from_buffer(file.data, "").get("vips-loader") == "jpegload_buffer" for file in jpegs)


def test_a_ceiling_below_the_floor_is_refused_and_never_aimed_at() -> None:
    from pydantic import ValidationError

    from blogimg.config import Settings

    with pytest.raises(ValidationError, match="CEILING_SCORE is below BLOGIMG_FLOOR_SCORE"):
        Settings(floor_score=80.0, ceiling_score=75.0)
    Settings(webp_target_score=95.0, ceiling_score=90.0)  # targets are target mode's: no ceiling there
    # ImagingOptions built by hand is not validated: the search still never aims below the floor.
    probe = photo_like(320, 240)
    choice = choose(probe, "webp", ImagingOptions(threads=1, floor_score=70.0, ceiling_score=40.0, quality_search="floor"),
                    flat=False)
    assert choice.score >= 70.0


def test_a_start_quality_outside_the_search_range_is_brought_into_it() -> None:
    gradient = (pyvips.Image.xyz(320, 240)[0] * 0.7 + 20).cast("uchar").bandjoin([80, 160]).copy(interpretation="srgb")
    options = ImagingOptions(threads=1, jpeg_quality=2, floor_score=30.0, ceiling_score=31.0, quality_search="floor")
    choice = choose(gradient.copy_memory(), "jpeg", options, flat=False)
    assert choice.quality is not None and LOWEST <= choice.quality


def test_an_image_narrower_than_every_variant_width_is_its_own_probe() -> None:
    result = process_image(photo_like(120, 90).pngsave_buffer(), OPTIONS)
    assert {file.width for file in result.variants} == {120}
    # The master is the probe too: its file is the search's trial, with its score.
    assert result.master.score is not None and result.master.score >= OPTIONS.floor_score


def test_remade_variants_are_searched_on_the_same_probe_and_keep_its_score() -> None:
    from blogimg.imaging.process import make_variants

    options = ImagingOptions(variant_widths=(320, 480), threads=1, avif_effort=0,  # 160 px WebP caps near 70
                             quality_search="floor")
    master = process_image(photo_like(600, 450).pngsave_buffer(), options).master.data
    remade = make_variants(master, options, {("webp", 320), ("webp", 480)})
    assert [file.width for file in remade] == [320, 480]
    assert remade[0].score is not None and remade[0].score >= options.floor_score
    assert remade[1].score is None  # wider files are not scored: their quality is the probe's
    assert remade[0].quality == remade[1].quality


def test_many_encoder_threads_give_the_same_files() -> None:
    data = photo_like(400, 300).pngsave_buffer()
    one = process_image(data, OPTIONS)
    four = process_image(data, ImagingOptions(variant_widths=(160, 320), threads=4, avif_effort=0, quality_search="floor"))
    assert [f.sha256 for f in one.files] == [f.sha256 for f in four.files]
