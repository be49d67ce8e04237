"""Every file blogimg writes from a generated image says how it was made, read back by exiftool.

The provider's photo-like JPEG carries EXIF with GPS, a camera make and model and a capture date;
the stored master, every AVIF, WebP and JPEG variant and the thumbnail must carry blogimg's XMP
label (IPTC DigitalSourceType, provider, model) and none of that EXIF. exiftool comes with
Debian's ``libimage-exiftool-perl`` (.ci/run installs it): an independent reader, not libvips.
Without it these tests skip with the reason, unless BLOGIMG_TEST_REQUIRE_EXIFTOOL=1 (CI).
"""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import pyvips
from PIL import Image
from sqlalchemy import select

from blogimg.config import Settings
from blogimg.db.database import Database
from blogimg.db.tables import GeneratedImage, ImageVariant
from blogimg.domain import ImageRequest, ProviderImage
from blogimg.imaging.labels import (
    ALGORITHMIC_MEDIA,
    TRAINED_ALGORITHMIC_MEDIA,
    ProvenanceLabel,
    label_from_image,
)
from blogimg.imaging.process import ImagingOptions, make_thumbnail, process_image
from blogimg.pipeline.generate import generate
from blogimg.providers.card import CardProvider
from blogimg.providers.registry import ProviderRegistry
from blogimg.storage import MemoryStorage
from blogimg.testing import FakeProvider
from tests.support import exiftool, read_tags, write_posts

PROVIDER = 'studio "A" & <co>'  # quotes, ampersand and angle brackets must be XML-escaped
MODEL = "painter-2.1 <preview>"
FORMATS = ["avif", "webp", "jpeg"]


def camera_photo(width: int = 640, height: int = 427) -> bytes:
    """A photo-like JPEG (a noisy gradient) with the EXIF a phone writes: GPS, camera, date."""
    noise = Image.effect_noise((width, height), 40).convert("L")
    gradient = Image.linear_gradient("L").resize((width, height))
    photo = Image.merge("RGB", (gradient, noise, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x0110] = "Pocket Camera 12"  # Model
    exif.get_ifd(0x8769)[0x9003] = "2024:05:01 12:34:56"  # DateTimeOriginal
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (52.0, 22.0, 7.5), 3: "E", 4: (4.0, 53.0, 12.0)})
    output = io.BytesIO()
    photo.save(output, "JPEG", quality=90, exif=exif)
    return output.getvalue()


def assert_only_the_label(tags: dict[str, Any], source_type: str, provider: str, model: str) -> None:
    assert tags["XMP:DigitalSourceType"] == source_type, tags
    assert tags["XMP:Provider"] == provider and tags["XMP:Model"] == model, tags
    assert tags["XMP:CreatorTool"] == "blogimg"
    leaked = [name for name in tags if name.startswith(("EXIF:", "GPS:", "Composite:GPS"))
              or name.rsplit(":", 1)[-1] in {"Make", "DateTimeOriginal", "GPSLatitude", "GPSPosition"}]
    assert not leaked, leaked
    assert "PhoneMaker" not in json.dumps(tags) and "Pocket Camera" not in json.dumps(tags)


async def generate_one(tmp_path: Path, settings: Settings, database: Database, provider: Any) -> dict[str, bytes]:
    """The files blogimg wrote for one generated image (master, variants, thumbnail), by key: those
    the catalogue names, never a provider's original kept untouched beside them (C2PA)."""
    registry = ProviderRegistry({}, plugins=False)
    registry.register(provider.info.name, provider)
    storage = MemoryStorage()
    posts = write_posts(tmp_path / "posts", 1, markers=0)  # one cover image
    summary = await generate([posts], settings.model_copy(update={"variant_formats": FORMATS}),
                             providers=[provider.info.name], registry=registry, storage=storage)
    assert (summary.succeeded, summary.failed) == (1, 0)
    async with database.sessions() as session:
        image = await session.scalar(select(GeneratedImage))
        variants = list(await session.scalars(select(ImageVariant.storage_key)))
    assert image is not None and image.storage_key and image.thumbnail_key
    return {key: storage.files[key] for key in (image.storage_key, *variants, image.thumbnail_key)}


def photo_provider() -> FakeProvider:
    photo = camera_photo()

    def handler(request: ImageRequest, number: int) -> ProviderImage:
        return ProviderImage(data=photo, model=MODEL, cost_usd=0.0)

    return FakeProvider(PROVIDER, handler=handler, model=MODEL)


async def test_every_file_of_a_generated_image_is_labelled_and_keeps_no_camera_exif(
        tmp_path: Path, settings: Settings, database: Database) -> None:
    tool = exiftool()
    source = read_tags({"source.jpg": camera_photo()}, tmp_path)["source.jpg"]
    assert source["EXIF:Make"] == "PhoneMaker" and "EXIF:GPSLatitude" in source  # what must go

    files = await generate_one(tmp_path, settings, database, photo_provider())
    tags = read_tags(files, tmp_path)
    extensions = sorted(key.rsplit(".", 1)[1] for key in tags)
    # 48, 80 and 640 px × AVIF, WebP, JPEG (the JPEG master is the 640 px one: same bytes); thumbnail
    assert extensions == ["avif"] * 3 + ["jpg"] * 3 + ["webp"] * 4, (extensions, tool)
    for key, file_tags in tags.items():
        assert_only_the_label(file_tags, TRAINED_ALGORITHMIC_MEDIA, PROVIDER, MODEL), key
        assert file_tags["XMP:AISystemUsed"] == PROVIDER and file_tags["XMP:AISystemVersionUsed"] == MODEL


async def test_a_thumbnail_remade_from_the_master_keeps_its_label(tmp_path: Path) -> None:
    exiftool()
    options = ImagingOptions(variant_widths=(64,), variant_formats=("webp",), avif_effort=0)
    label = ProvenanceLabel(provider=PROVIDER, model=MODEL)
    rgba = Image.new("RGBA", (200, 120), (200, 40, 40, 128))  # translucent: a PNG master
    output = io.BytesIO()
    rgba.save(output, "PNG")
    processed = process_image(output.getvalue(), options, label=label)
    assert processed.master.format == "png"
    remade = make_thumbnail(processed.master.data, options, (0.5, 0.5))
    tags = read_tags({"master.png": processed.master.data, "thumbnail.webp": remade.data}, tmp_path)
    for file_tags in tags.values():
        assert_only_the_label(file_tags, TRAINED_ALGORITHMIC_MEDIA, PROVIDER, MODEL)


async def test_a_card_is_labelled_as_algorithmic_media(tmp_path: Path, settings: Settings,
                                                       database: Database) -> None:
    exiftool()
    files = await generate_one(tmp_path, settings, database, CardProvider)
    tags = read_tags(files, tmp_path)
    assert len(tags) == 10  # master (the same bytes as the 640 px JPEG), 3 widths × 3 formats, thumbnail
    for file_tags in tags.values():
        assert_only_the_label(file_tags, ALGORITHMIC_MEDIA, "card", "card-v1")
        assert "XMP:AISystemUsed" not in file_tags  # no AI system made it


async def test_with_labels_off_no_file_carries_xmp(tmp_path: Path, settings: Settings, database: Database) -> None:
    exiftool()
    files = await generate_one(tmp_path, settings.model_copy(update={"provenance_labels": False}), database,
                               photo_provider())
    tags = read_tags(files, tmp_path)
    assert len(tags) == 10  # master (the same bytes as the 640 px JPEG), 3 widths × 3 formats, thumbnail
    for key, file_tags in tags.items():
        assert not [name for name in file_tags if name.startswith(("XMP", "EXIF:", "GPS:"))], key


def test_the_setting_is_on_by_default_and_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().provenance_labels is True
    monkeypatch.setenv("BLOGIMG_PROVENANCE_LABELS", "false")
    assert Settings().provenance_labels is False
    assert ImagingOptions.from_settings(Settings()).provenance_labels is False


def translucent_png(width: int = 200, height: int = 120) -> bytes:
    """A PNG with real transparency: its master stays PNG."""
    output = io.BytesIO()
    Image.new("RGBA", (width, height), (200, 40, 40, 128)).save(output, "PNG")
    return output.getvalue()


def test_a_png_master_carries_exactly_one_xmp_packet(tmp_path: Path) -> None:
    """libvips' PNG saver writes XMP too (a zTXt chunk): the master must hold only blogimg's iTXt one."""
    tool = exiftool()
    options = ImagingOptions(variant_widths=(64,), variant_formats=("webp",), avif_effort=0)
    label = ProvenanceLabel(provider=PROVIDER, model=MODEL)
    master = process_image(translucent_png(), options, label=label).master
    assert master.format == "png"
    path = tmp_path / "master.png"
    path.write_bytes(master.data)
    # -a keeps duplicates; family 4 names a second copy of a tag "Copy1" (plain -G merges them in JSON).
    run = subprocess.run([tool, "-a", "-j", "-G0:4", str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    [tags] = json.loads(run.stdout)
    found = {name: value for name, value in tags.items() if name.endswith(":DigitalSourceType")}
    assert found == {"XMP:DigitalSourceType": TRAINED_ALGORITHMIC_MEDIA}, found
    assert master.data.count(b"XML:com.adobe.xmp") == 1 and b"iTXt" in master.data and b"zTXt" not in master.data
    # The one packet is the one a master remade later reads its label from.
    assert label_from_image(pyvips.Image.new_from_buffer(master.data, "")) == label


def test_a_hostile_model_name_still_makes_a_label_that_reads_back(tmp_path: Path) -> None:
    """A lone surrogate, U+FFFF and 10,000 characters: dropped and capped, never a failed image."""
    tool = exiftool()
    hostile = ProvenanceLabel(provider="studio\ud800", model="painter\uffff\ufffe-" + "x" * 10_000)
    cleaned = ProvenanceLabel(provider="studio", model=("painter-" + "x" * 10_000)[:256])
    options = ImagingOptions(variant_widths=(64,), variant_formats=("webp",), avif_effort=0)
    processed = process_image(translucent_png(), options, label=hostile)
    assert label_from_image(pyvips.Image.new_from_buffer(processed.master.data, "")) == cleaned
    remade = make_thumbnail(processed.master.data, options, None)  # the label read back, written again
    tags = read_tags({"master.png": processed.master.data, "thumbnail.webp": remade.data}, tmp_path)
    for file_tags in tags.values():
        assert (file_tags["XMP:Provider"], file_tags["XMP:Model"]) == (cleaned.provider, cleaned.model), tool
