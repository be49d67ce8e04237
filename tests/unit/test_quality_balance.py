"""The slope quality search (imaging/quality_balance.py, choices.py, process.py) with the real
encoders and the real metric: the walk stops where neither neighbour is cheaper, a point worth more
buys more quality, the floor is checked and raised at the size readers see and that file is kept,
and a format with no price per point keeps the floor search."""

from __future__ import annotations

import pytest
import pyvips

from blogimg.imaging.choices import check, choose, encode_with_budget
from blogimg.imaging.options import ImagingOptions
from blogimg.imaging.process import make_variants, process_image
from blogimg.imaging.quality_balance import (
    MAX_RAISES,
    MAX_TRIALS,
    RAISE_STEP,
    STEP,
    balance_quality,
    raise_to_floor,
)
from blogimg.imaging.quality_search import HIGHEST, score_file
from tests.support import photo_like

SLOPE = ImagingOptions(variant_widths=(320, 768), threads=1, avif_effort=0, quality_search="slope")


def _cost(probe: pyvips.Image, image_format: str, quality: int, weight: float) -> float:
    data = encode_with_budget(probe, image_format, quality, SLOPE)
    return len(data) / (probe.width * probe.height / 1e6) - weight * score_file(probe, data)


@pytest.mark.parametrize("image_format", ["jpeg", "webp"])
def test_the_walk_ends_where_neither_neighbour_costs_less(image_format: str) -> None:
    probe = photo_like(320, 240).copy_memory()
    weight = SLOPE.point_bytes(image_format)
    start = SLOPE.fixed_quality(image_format)

    choice = balance_quality(probe, image_format, weight, lambda q: encode_with_budget(probe, image_format, q, SLOPE),
                             start=start)

    assert choice.quality is not None and score_file(probe, choice.data) == pytest.approx(choice.score)
    assert 3 <= choice.trials <= MAX_TRIALS
    if choice.trials < MAX_TRIALS:  # the walk stopped on its own: a minimum on its steps
        here = _cost(probe, image_format, choice.quality, weight)
        step = STEP[image_format]
        assert here <= _cost(probe, image_format, choice.quality + step, weight)
        assert here <= _cost(probe, image_format, choice.quality - step, weight)


def test_a_point_worth_more_buys_a_higher_quality_score_and_size() -> None:
    probe = photo_like(320, 240).copy_memory()

    def encode(quality: int) -> bytes:
        return encode_with_budget(probe, "jpeg", quality, SLOPE)

    cheap = balance_quality(probe, "jpeg", 800.0, encode, start=83)
    dear = balance_quality(probe, "jpeg", 60000.0, encode, start=83)
    assert cheap.quality is not None and dear.quality is not None
    assert cheap.quality < 83 < dear.quality
    assert len(cheap.data) < len(dear.data) and cheap.score < dear.score


def test_a_file_below_the_floor_is_raised_to_the_first_step_reaching_it() -> None:
    reference = photo_like(320, 240).copy_memory()

    def encode(quality: int) -> bytes:
        return encode_with_budget(reference, "jpeg", quality, SLOPE)

    start_score = score_file(reference, encode(30))
    floor = start_score + 8.0
    checked = raise_to_floor(reference, encode, 30, floor)
    assert checked.quality > 30 and (checked.quality - 30) % RAISE_STEP == 0
    assert checked.score >= floor and score_file(reference, checked.data) == pytest.approx(checked.score)
    assert score_file(reference, encode(checked.quality - RAISE_STEP)) < floor  # no raise too many

    # A floor no file reaches: a bounded number of raises, and the last (best) file kept.
    hopeless = raise_to_floor(reference, encode, 30, 100.5)
    assert hopeless.trials == MAX_RAISES + 1 and hopeless.score < 100.5
    assert hopeless.quality == min(HIGHEST, 30 + MAX_RAISES * RAISE_STEP)


def test_the_master_is_checked_at_full_size_and_that_file_is_kept() -> None:
    image = photo_like(960, 720)
    probe = image.resize(320 / 960).copy_memory()
    options = ImagingOptions(variant_widths=(320,), variant_formats=("webp",), threads=1, quality_search="slope")
    on_probe = choose(probe, "jpeg", options, flat=False)
    assert on_probe.quality is not None
    at_full_size = score_file(image, encode_with_budget(image, "jpeg", on_probe.quality, options))
    # A floor above what the probe's choice gives at full size: the check must raise it.
    floor = at_full_size + 3.0
    result = process_image(image.pngsave_buffer(), ImagingOptions(
        variant_widths=(320,), variant_formats=("webp",), threads=1, quality_search="slope", jpeg_lowest_score=floor))

    assert result.master.quality is not None and result.master.quality > on_probe.quality
    assert result.master.score is not None and result.master.score >= floor
    # The score recorded is the kept file's own (its XMP label aside, the same pixels).
    assert score_file(image, result.master.data) == pytest.approx(result.master.score)


def _floor_above_the_choice(image: pyvips.Image, width: int) -> float:
    """A WebP floor 2 points above what the probe's choice (320 px) scores at ``width``."""
    probe = image.resize(320 / image.width).copy_memory()
    choice = choose(probe, "webp", SLOPE, flat=False)
    assert choice.quality is not None
    at = image.resize(width / image.width)
    return score_file(at, encode_with_budget(at, "webp", choice.quality, SLOPE)) + 2.0


def test_a_variant_is_checked_at_the_width_nearest_768_and_every_width_shares_its_quality() -> None:
    image = photo_like(1000, 750)
    floor = _floor_above_the_choice(image, 768)
    options = ImagingOptions(variant_widths=(320, 768, 900), variant_formats=("webp",), threads=1,
                             quality_search="slope", webp_lowest_score=floor)
    result = process_image(image.pngsave_buffer(), options)

    webp = {file.width: file for file in result.variants}
    assert sorted(webp) == [320, 768, 900, 1000]
    checked = webp[768]
    assert checked.score is not None and checked.score >= floor
    reference = image.resize(768 / 1000)
    assert score_file(reference, checked.data) == pytest.approx(checked.score)
    assert len({file.quality for file in webp.values()}) == 1
    assert webp[900].score is None  # not scored: its quality is the check's


def test_a_variant_far_above_its_floor_is_not_checked() -> None:
    probe = photo_like(320, 240).copy_memory()
    choice = choose(probe, "webp", SLOPE, flat=False)
    at = photo_like(768, 576)
    lenient = ImagingOptions(threads=1, quality_search="slope", webp_lowest_score=choice.score - 8.0)
    assert check(at, "webp", choice, lenient, probe=probe, margin=7.0) is None
    assert check(at, "webp", choice, lenient, probe=probe, margin=None) is not None


def test_a_format_with_no_price_per_point_keeps_the_floor_search() -> None:
    probe = photo_like(320, 240).copy_memory()
    floor = choose(probe, "avif", ImagingOptions(threads=1, avif_effort=0, quality_search="floor"), flat=False)
    priceless = ImagingOptions(threads=1, avif_effort=0, quality_search="slope", avif_point_bytes=0.0)
    slope = choose(probe, "avif", priceless, flat=False)
    assert (slope.quality, slope.data) == (floor.quality, floor.data)
    assert check(photo_like(768, 576), "avif", slope, priceless) is None


def test_remade_variants_are_checked_as_a_new_image_is() -> None:
    image = photo_like(1000, 750)
    floor = _floor_above_the_choice(image, 768)
    options = ImagingOptions(variant_widths=(320, 768), variant_formats=("webp",), threads=1,
                             quality_search="slope", webp_lowest_score=floor)
    master = process_image(image.pngsave_buffer(), options).master.data
    remade = make_variants(master, options, {("webp", 320), ("webp", 768)})
    assert [file.width for file in remade] == [320, 768]
    assert remade[1].score is not None and remade[1].score >= floor
    assert remade[0].quality == remade[1].quality


def test_the_settings_take_slope_mode_and_refuse_a_negative_price() -> None:
    from pydantic import ValidationError

    from blogimg.config import Settings

    settings = Settings(quality_search="slope", webp_point_bytes=1234.0, avif_lowest_score=55.0)
    options = ImagingOptions.from_settings(settings)
    assert (options.quality_search, options.point_bytes("webp"), options.lowest_score("avif")) == ("slope", 1234.0, 55.0)
    with pytest.raises(ValidationError, match="jpeg_point_bytes"):
        Settings(jpeg_point_bytes=-1.0)
