"""Variants for changed settings, made from the stored masters: a new width across 100 images
calls no provider, spends nothing, and adds exactly one row per image and format, each file
stored at the right size; a second run adds nothing; a changed image is never given rows."""

from __future__ import annotations

from pathlib import Path

import pytest
import pyvips
from sqlalchemy import func, select

from blogimg.config import Settings
from blogimg.db.bulk import BulkRows, NewVariant
from blogimg.db.database import Database
from blogimg.db.tables import GeneratedImage, GenerationAttempt, ImageVariant
from blogimg.imaging.process import ImagingOptions
from blogimg.pipeline.generate import generate
from blogimg.pipeline.remake_variants import remake_variants, wanted_variants
from blogimg.storage import MemoryStorage
from tests.support import on_both_engines, write_posts


@pytest.fixture
def small(settings: Settings) -> Settings:
    return settings.model_copy(update={"cover_size": "320x200", "inline_size": "200x200", "variant_widths": [96],
                                       "max_concurrent": 8})


async def ledger(database: Database) -> tuple[int, float]:
    async with database.sessions() as session:
        calls, cost = (await session.execute(
            select(func.count(), func.coalesce(func.sum(GenerationAttempt.cost_usd), 0.0)))).one()
    return int(calls), float(cost)


async def variant_rows(database: Database) -> list[tuple[int, str, int, int, str]]:
    async with database.sessions() as session:
        return list((await session.execute(select(
            ImageVariant.image_id, ImageVariant.format, ImageVariant.width, ImageVariant.height,
            ImageVariant.storage_key).order_by(ImageVariant.id))).all())


async def test_a_new_width_across_100_images_calls_no_provider(tmp_path: Path, small: Settings) -> None:
    storage = MemoryStorage()
    summary = await generate([write_posts(tmp_path / "posts", 50, markers=1)], small, providers=["card"],
                             storage=storage)
    assert summary.succeeded == 100 and summary.failed == 0
    database = await Database.open(small.database_url)
    try:
        ledger_before, rows_before = await ledger(database), await variant_rows(database)
        assert ledger_before[0] == 100
        wider = small.model_copy(update={"variant_widths": [64, 96]})
        options = ImagingOptions.from_settings(wider)
        assert options.variant_formats == ("avif", "webp")
        seen: list[int] = []
        report = await remake_variants(BulkRows(database.engine, database.sessions), storage, options,
                                       page_size=30, on_image=lambda done: seen.append(done.images_seen))
        assert report.skipped == {}
        assert report.images_seen == 100 and report.images_changed == 100
        assert report.variants_added == 100 * len(options.variant_formats)
        assert seen == list(range(1, 101))

        assert await ledger(database) == ledger_before  # not one provider call, not one cent
        rows_after = await variant_rows(database)
        assert rows_after[:len(rows_before)] == rows_before  # the old rows are untouched
        added = rows_after[len(rows_before):]
        assert len(added) == 100 * 2
        async with database.sessions() as session:
            sizes = {image_id: (width, height) for image_id, width, height in (await session.execute(
                select(GeneratedImage.id, GeneratedImage.width, GeneratedImage.height))).all()}
        assert {(image_id, image_format) for image_id, image_format, *_ in added} == {
            (image_id, image_format) for image_id in sizes for image_format in ("avif", "webp")}
        for image_id, image_format, width, height, key in added:
            assert width == 64
            master_width, master_height = sizes[image_id]
            assert height == round(master_height * 64 / master_width)
            stored = pyvips.Image.new_from_buffer(storage.files[key], "")
            assert (stored.width, stored.height) == (width, height)
            assert key.endswith("." + image_format)

        again = await remake_variants(BulkRows(database.engine, database.sessions), storage, options)
        assert again.images_seen == 100 and again.variants_added == 0 and again.images_changed == 0
        assert await variant_rows(database) == rows_after
        assert await ledger(database) == ledger_before
    finally:
        await database.close()


def test_the_variants_asked_for_follow_the_master_size() -> None:
    options = ImagingOptions(variant_widths=(64, 96, 400), variant_formats=("webp",))
    assert wanted_variants(200, 100, options) == {("webp", 64), ("webp", 96), ("webp", 200)}
    assert wanted_variants(0, 0, options) == set()


@on_both_engines
async def test_rows_are_added_only_while_the_image_is_made_from_that_master(tmp_path: Path, small: Settings) -> None:
    storage = MemoryStorage()
    summary = await generate([write_posts(tmp_path / "posts", 1, markers=1)], small, providers=["card"],
                             storage=storage)
    assert summary.succeeded == 2
    database = await Database.open(small.database_url)
    try:
        rows = BulkRows(database.engine, database.sessions)
        first, second = await rows.made_after(0, 10)
        new = [NewVariant("jpeg", 64, 40, 10, "aa/bb/new.jpg")]
        assert await rows.add_variants(first.image_id, "another/master.jpg", new) == 0  # remade meanwhile
        assert await rows.add_variants(second.image_id, second.master_key, new) == 1
        assert await rows.add_variants(second.image_id, second.master_key, new) == 0  # already there
        assert ("jpeg", 64) in (await rows.made_after(first.image_id, 1))[0].variants
        deleted = await database.catalog.delete_image(first.image_id)
        assert deleted
        assert await rows.add_variants(first.image_id, first.master_key, new) == 0  # gone
    finally:
        await database.close()
