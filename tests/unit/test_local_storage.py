"""Local storage: atomic writes, no escape from the root, clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from blogimg.errors import ConfigurationError, InvalidKeyError, StorageError
from blogimg.storage.local import TEMPORARY_PREFIX, LocalStorage


async def test_a_crash_mid_write_leaves_the_old_file_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = LocalStorage(tmp_path)
    await storage.put("aa/file.png", b"old contents", "image/png")

    def crash(*args: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(StorageError, match="Input/output error"):
        await storage.put("aa/file.png", b"new contents that never land", "image/png")
    assert (tmp_path / "aa" / "file.png").read_bytes() == b"old contents"
    assert not [p for p in (tmp_path / "aa").iterdir() if p.name.startswith(TEMPORARY_PREFIX)]


async def test_partial_files_are_never_visible_under_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = LocalStorage(tmp_path)
    seen_during_write: list[bool] = []
    real_fsync = os.fsync

    def observing_fsync(descriptor: int) -> None:
        seen_during_write.append((tmp_path / "bb" / "new.webp").exists())
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", observing_fsync)
    await storage.put("bb/new.webp", b"x" * 100_000, "image/webp")
    assert seen_during_write and seen_during_write[0] is False  # data synced before the name appears
    assert (tmp_path / "bb" / "new.webp").stat().st_size == 100_000


async def test_symlink_cannot_lead_outside_the_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    storage = LocalStorage(root)
    with pytest.raises(InvalidKeyError, match="outside the storage root"):
        await storage.put("link/escape.png", b"data", "image/png")
    assert not (outside / "escape.png").exists()


def test_unwritable_root_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigurationError, match="storage directory .* is not writable"):
        LocalStorage(blocker / "images").check_writable()


async def test_listing_skips_temporary_files(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    await storage.put("cc/kept.jpg", b"1", "image/jpeg")
    (tmp_path / "cc" / f"{TEMPORARY_PREFIX}leftover").write_bytes(b"partial")
    assert [o.key async for o in storage.list()] == ["cc/kept.jpg"]
