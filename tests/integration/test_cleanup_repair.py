"""``blogimg cleanup``'s way back for images whose files are missing, and its tidy deletes.

Missing variant or thumbnail files are made again from the stored master (``--repair``): a lossless
master gives the very same bytes under the very same keys; a lossy one gives new keys, which the
rows then name. An image whose master is gone too is listed with the command that makes it again
(``--remake``), which queues it through the queue and calls a provider. ``--apply`` leaves no
empty shard folders behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyvips

from blogimg.config import Settings
from blogimg.domain import ImageRequest, ProviderImage
from blogimg.pipeline.generate import generate
from blogimg.testing import FakeProvider
from tests.support import query, referenced_keys, registry_with, run_cli, stored_files, write_posts

#: The ``settings`` fixture's imaging settings, for the CLI run as a subprocess.
IMAGING: dict[str, Any] = {"BLOGIMG_VARIANT_WIDTHS": "48,80", "BLOGIMG_AVIF_EFFORT": "0", "BLOGIMG_THUMBNAIL_SIZE": "300"}
FAST: dict[str, Any] = {"BLOGIMG_COVER_SIZE": "640x400", "BLOGIMG_INLINE_SIZE": "400x400", "BLOGIMG_VARIANT_WIDTHS": "320",
        "BLOGIMG_AVIF_EFFORT": "0"}


def translucent_png(request: ImageRequest, number: int) -> ProviderImage:
    """A PNG with real transparency: its master stays PNG, so re-making from it is lossless."""
    x, y = pyvips.Image.xyz(96, 64)[0], pyvips.Image.xyz(96, 64)[1]
    rgb = (x * 2).bandjoin([y * 3, (x + y) * 1.5]).cast("uchar")
    image = rgb.bandjoin((y * 3 + 40).cast("uchar")).copy(interpretation="srgb")
    return ProviderImage(data=image.pngsave_buffer(), model="fake-1", cost_usd=0.0)


def variant_keys(database: Path, image_id: int) -> dict[tuple[str, int], str]:
    rows = query(database, "SELECT format, width, storage_key FROM image_variants WHERE image_id = ?", image_id)
    return {(image_format, width): key for image_format, width, key in rows}


async def test_repair_restores_missing_files_byte_identical_from_a_lossless_master(
        tmp_path: Path, settings: Settings) -> None:
    data, database = tmp_path / "data", tmp_path / "data" / "blogimg.db"
    alpha = FakeProvider("alpha", handler=translucent_png)
    summary = await generate([write_posts(tmp_path / "posts", 1, markers=0)], settings, providers=["alpha"],
                             registry=registry_with(alpha))
    assert summary.succeeded == 1
    [(image_id, master, thumbnail)] = query(database, "SELECT id, storage_key, thumbnail_key FROM generated_images")
    assert master.endswith(".png")
    rows_before = query(database, "SELECT * FROM image_variants ORDER BY id")
    webp = variant_keys(database, image_id)[("webp", 80)]
    lost = {key: (data / "images" / key).read_bytes() for key in (webp, thumbnail)}
    for key in lost:
        (data / "images" / key).unlink()

    report = run_cli("cleanup", data=data, cwd=tmp_path, **IMAGING)
    assert report.returncode == 0, report.stderr
    assert f"images whose files are missing: 1 (ids {image_id})" in report.stdout
    assert "blogimg cleanup --repair" in report.stdout
    assert not any((data / "images" / key).exists() for key in lost)  # a report changes nothing

    repaired = run_cli("cleanup", "--repair", data=data, cwd=tmp_path, **IMAGING)
    assert repaired.returncode == 0, repaired.stderr + repaired.stdout
    assert f"repaired 1 images from their stored master (ids {image_id}): 2 files made again" in repaired.stdout
    for key, content in lost.items():
        assert (data / "images" / key).read_bytes() == content  # byte-identical, under the same key
    assert query(database, "SELECT * FROM image_variants ORDER BY id") == rows_before
    assert query(database, "SELECT storage_key, thumbnail_key FROM generated_images") == [(master, thumbnail)]
    assert len(alpha.calls) == 1  # no provider was asked again
    again = run_cli("cleanup", data=data, cwd=tmp_path, **IMAGING)
    assert "images whose files are missing: 0" in again.stdout and "files with no row: 0" in again.stdout


def test_repair_from_a_lossy_master_rekeys_and_a_lost_master_is_remade(tmp_path: Path) -> None:
    data, database = tmp_path / "data", tmp_path / "data" / "blogimg.db"
    posts = write_posts(tmp_path / "posts", 2, markers=0)
    made = run_cli("generate", str(posts), data=data, cwd=tmp_path, **FAST)
    assert made.returncode == 0, made.stderr
    (first, first_master), (second, second_master) = query(
        database, "SELECT id, storage_key FROM generated_images ORDER BY id")
    assert first_master.endswith(".jpg") and second_master.endswith(".jpg")
    # The first image loses a variant; the second its master and a variant too.
    old_webp = variant_keys(database, first)[("webp", 320)]
    (data / "images" / old_webp).unlink()
    (data / "images" / second_master).unlink()
    (data / "images" / variant_keys(database, second)[("avif", 320)]).unlink()
    calls_before = query(database, "SELECT count(*) FROM generation_attempts")[0][0]

    report = run_cli("cleanup", data=data, cwd=tmp_path, **FAST)
    assert f"images whose files are missing: 2 (ids {first}, {second})" in report.stdout
    assert f"images whose master is gone too: 1 (ids {second})" in report.stdout
    assert "blogimg cleanup --remake" in report.stdout

    repaired = run_cli("cleanup", "--repair", data=data, cwd=tmp_path, **FAST)
    assert repaired.returncode == 0, repaired.stderr + repaired.stdout
    assert f"repaired 1 images from their stored master (ids {first})" in repaired.stdout
    assert "re-encoded from a lossy master under new keys" in repaired.stdout
    new_webp = variant_keys(database, first)[("webp", 320)]
    assert new_webp != old_webp and (data / "images" / new_webp).is_file()
    assert f"images whose master is gone too: 1 (ids {second})" in repaired.stdout
    assert query(database, "SELECT count(*) FROM generation_attempts")[0][0] == calls_before  # --repair never calls

    remade = run_cli("cleanup", "--remake", data=data, cwd=tmp_path, **FAST)
    assert remade.returncode == 0, remade.stderr + remade.stdout
    assert query(database, "SELECT count(*) FROM generation_attempts")[0][0] == calls_before + 1
    assert query(database, "SELECT status FROM generated_images ORDER BY id") == [("succeeded",), ("succeeded",)]
    assert query(database, "SELECT status FROM image_events WHERE image_id = ? ORDER BY id DESC LIMIT 3",
                 second) == [("succeeded",), ("running",), ("queued",)]
    assert referenced_keys(database) <= stored_files(data / "images")  # every row's file is there
    final = run_cli("cleanup", data=data, cwd=tmp_path, **FAST)
    assert "images whose files are missing: 0" in final.stdout


def test_apply_leaves_no_empty_shard_folders(tmp_path: Path) -> None:
    data = tmp_path / "data"
    made = run_cli("generate", str(write_posts(tmp_path / "posts", 1, markers=0)), data=data, cwd=tmp_path, **FAST)
    assert made.returncode == 0, made.stderr
    kept = stored_files(data / "images")
    for key in ("zz/yy/orphan.webp", "zz/yx/orphan.avif"):
        (data / "images" / key).parent.mkdir(parents=True, exist_ok=True)
        (data / "images" / key).write_bytes(b"x")
    applied = run_cli("cleanup", "--apply", "--grace-seconds", "0", data=data, cwd=tmp_path, **FAST)
    assert applied.returncode == 0 and "deleted 2 files" in applied.stdout
    assert stored_files(data / "images") == kept
    assert not (data / "images" / "zz").exists()
    assert [folder for folder in (data / "images").rglob("*") if folder.is_dir() and not any(folder.iterdir())] == []


def test_keys_that_look_like_markup_are_printed_as_they_are(tmp_path: Path) -> None:
    """Keys may hold ``[`` and ``]``: ``zz/[/b].png`` is a key, not a Rich closing tag (which made
    the listing fail with a MarkupError). A Finder's ``.DS_Store`` is not a key: not listed at all."""
    data = tmp_path / "data"
    assert run_cli("init", data=data, cwd=tmp_path).returncode == 0
    for name in ("zz/[/b].png", "zz/[bold]x.png", ".DS_Store"):
        (data / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        (data / "images" / name).write_bytes(b"orphan")
    report = run_cli("cleanup", data=data, cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert "files with no row: 2\n  zz/[/b].png\n  zz/[bold]x.png\n" in report.stdout, report.stdout
    applied = run_cli("cleanup", "--apply", "--grace-seconds", "0", data=data, cwd=tmp_path)
    assert applied.returncode == 0, applied.stderr
    assert "deleted 2 files" in applied.stdout
    assert stored_files(data / "images") == {".DS_Store"}  # not ours: left alone
