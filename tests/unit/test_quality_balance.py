"""The slope quality search (imaging/quality_balance.py, choices.py, process.py) with the real
encoders and the real metric: the search keeps the cheapest quality it tried and finds a deeper
dip than the one next to the fixed quality (where a walk stopped), a point worth more
buys more quality, the floor is checked and raised at the size readers see and that file is kept,
and a format with no price per point keeps the floor search."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import pyvips

from blogimg.imaging.choices import check, choose, encode_with_budget
from blogimg.imaging.options import ImagingOptions
from blogimg.imaging.process import make_variants, process_image
from blogimg.imaging.quality_balance import (
    MAX_RAISES,
    RAISE_STEP,
    REFINE,
    SCAN,
    balance_quality,
    raise_to_floor,
)
from blogimg.imaging.quality_search import HIGHEST, Choice, score_file
from tests.support import photo_like

SLOPE = ImagingOptions(variant_widths=(320, 768), threads=1, avif_effort=0, quality_search="slope")


def _cost(probe: pyvips.Image, image_format: str, quality: int, weight: float) -> float:
    data = encode_with_budget(probe, image_format, quality, SLOPE)
    return len(data) / (probe.width * probe.height / 1e6) - weight * score_file(probe, data)


@pytest.mark.parametrize("image_format", ["jpeg", "webp"])
def test_the_search_keeps_the_cheapest_quality_it_tried(image_format: str) -> None:
    probe = photo_like(320, 240).copy_memory()
    weight = SLOPE.point_bytes(image_format)
    asked: list[int] = []

    def encode(quality: int) -> bytes:
        asked.append(quality)
        return encode_with_budget(probe, image_format, quality, SLOPE)

    choice = balance_quality(probe, image_format, weight, encode)

    assert choice.quality is not None and score_file(probe, choice.data) == pytest.approx(choice.score)
    assert len(asked) == len(set(asked)) == choice.trials  # nothing encoded twice
    assert asked[:len(SCAN[image_format])] == list(SCAN[image_format])
    assert len(SCAN[image_format]) < choice.trials <= len(SCAN[image_format]) + 2 * len(REFINE)
    costs = {quality: _cost(probe, image_format, quality, weight) for quality in asked}
    assert choice.quality == min(costs, key=lambda quality: (costs[quality], quality))


def test_a_point_worth_more_buys_a_higher_quality_score_and_size() -> None:
    probe = photo_like(320, 240).copy_memory()

    def encode(quality: int) -> bytes:
        return encode_with_budget(probe, "jpeg", quality, SLOPE)

    cheap = balance_quality(probe, "jpeg", 800.0, encode)
    dear = balance_quality(probe, "jpeg", 60000.0, encode)
    assert cheap.quality is not None and dear.quality is not None
    assert cheap.quality < dear.quality
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


def _known_curve(monkeypatch: pytest.MonkeyPatch, extra: Callable[[int], int]) -> tuple[list[int], Callable[[], Choice]]:
    """An encoder whose file at quality q scores q and weighs ``extra(q)`` + 50 q bytes a megapixel
    more than at 0, so at a weight of 50 the search's cost is ``extra(q)`` + 1000; the trials it was
    asked for."""
    asked: list[int] = []
    probe = pyvips.Image.black(1000, 1000)  # one megapixel

    def encode(quality: int) -> bytes:
        asked.append(quality)
        return bytes(1000 + extra(quality) + 50 * quality) + quality.to_bytes(1, "big")

    monkeypatch.setattr("blogimg.imaging.quality_balance.score_file", lambda _reference, data: float(data[-1]))
    return asked, lambda: balance_quality(probe, "jpeg", 50.0, encode)


def test_the_search_scans_then_refines_around_the_cheapest(monkeypatch: pytest.MonkeyPatch) -> None:
    asked, search = _known_curve(monkeypatch, lambda q: (q - 60) ** 2)
    choice = search()
    assert SCAN["jpeg"] == (55, 67, 79, 91) and REFINE == (7, 3)  # the trials below follow from them
    # 55 is the scan's cheapest; 62 beats 48 and 55; of 59, 62 and 65, 59 (cost 1) is cheapest.
    assert asked == [55, 67, 79, 91, 48, 62, 59, 65]
    assert choice.quality == 59 and choice.trials == 8


def test_the_search_finds_a_cheaper_dip_than_the_one_next_to_the_fixed_quality(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Two dips: a shallow one at 83, next to JPEG's fixed quality, where a walk from it stopped,
    # and the deepest at 50.
    asked, search = _known_curve(monkeypatch, lambda q: min((q - 50) ** 2, (q - 83) ** 2 + 30))
    choice = search()
    assert choice.quality is not None and abs(choice.quality - 50) <= 1
    assert len(asked) == len(set(asked)) <= len(SCAN["jpeg"]) + 2 * len(REFINE)  # nothing encoded twice


def test_the_search_never_leaves_the_quality_range(monkeypatch: pytest.MonkeyPatch) -> None:
    asked, search = _known_curve(monkeypatch, lambda q: (q - HIGHEST - 20) ** 2)
    choice = search()
    assert max(asked) == HIGHEST and choice.quality == HIGHEST


@pytest.mark.parametrize("threads", [1, 4])
def test_slope_mode_gives_the_same_files_on_any_number_of_threads(threads: int) -> None:
    data = photo_like(800, 600).pngsave_buffer()
    options = ImagingOptions(variant_widths=(320, 768), threads=1, avif_effort=0)
    reference = process_image(data, options)
    again = process_image(data, ImagingOptions(variant_widths=(320, 768), threads=threads, avif_effort=0))
    assert options.quality_search == "slope"  # the default
    assert [f.sha256 for f in again.files] == [f.sha256 for f in reference.files]


def test_process_image_checks_the_master_with_its_margin_and_keeps_the_checked_file(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import blogimg.imaging.choices as choices_module
    import blogimg.imaging.process as process_module

    margins: dict[str, float | None] = {}
    real_check = process_module.check

    def spying_check(image: pyvips.Image, image_format: str, *arguments: object, **keywords: object) -> object:
        margins[image_format] = keywords.get("margin")  # type: ignore[assignment]
        return real_check(image, image_format, *arguments, **keywords)  # type: ignore[arg-type]

    full_size: list[int] = []
    real_encode = choices_module.encode_with_budget

    def counting_encode(image: pyvips.Image, image_format: str, *arguments: object, **keywords: object) -> bytes:
        if image_format == "jpeg" and image.width == 960:
            full_size.append(1)
        return real_encode(image, image_format, *arguments, **keywords)  # type: ignore[arg-type]

    monkeypatch.setattr(process_module, "check", spying_check)
    monkeypatch.setattr(choices_module, "encode_with_budget", counting_encode)
    monkeypatch.setattr(process_module, "encode_with_budget", counting_encode)
    options = ImagingOptions(variant_widths=(320, 768), threads=1, avif_effort=0, jpeg_lowest_score=99.0)
    result = process_image(photo_like(960, 720).pngsave_buffer(), options)

    assert margins == {"jpeg": 13.0, "webp": 7.0, "avif": 7.0}
    assert result.master.score is not None  # measured by the check ...
    assert len(full_size) == MAX_RAISES + 1  # ... whose last file is the master: not encoded again


def test_an_image_with_alpha_gets_a_png_master_and_searched_checked_variants() -> None:
    image = photo_like(800, 600).bandjoin(200)  # translucent: the alpha band stays
    options = ImagingOptions(variant_widths=(320, 768), variant_formats=("webp",), threads=1)
    result = process_image(image.pngsave_buffer(), options)
    assert result.master.format == "png" and result.master.quality is None
    assert {f.width for f in result.variants} == {320, 768, 800}
    assert len({f.quality for f in result.variants}) == 1


def test_an_image_narrower_than_every_width_is_its_own_probe_and_check() -> None:
    result = process_image(photo_like(200, 150).pngsave_buffer(),
                           ImagingOptions(variant_widths=(320, 768), threads=1, avif_effort=0))
    assert {f.width for f in result.variants} == {200}
    # Every file was scored where it is: the probe's trials are the check's first file.
    assert result.master.score is not None and all(f.score is not None for f in result.variants)


def test_jpeg_variants_share_the_masters_checked_quality() -> None:
    options = ImagingOptions(variant_widths=(320, 768), variant_formats=("jpeg",), threads=1)
    result = process_image(photo_like(960, 720).pngsave_buffer(), options)
    assert result.master.format == "jpeg"
    assert {f.quality for f in result.variants} == {result.master.quality}
    widest = next(f for f in result.variants if f.width == 960)
    assert widest.data == result.master.data  # the checked file, kept for both
