"""Local storage deletes leave no empty shard folders behind, and never touch the root."""

from __future__ import annotations

from pathlib import Path

from blogimg.storage.local import LocalStorage


async def test_delete_removes_the_shard_folders_it_empties_but_not_the_root(tmp_path: Path) -> None:
    root = tmp_path / "images"
    storage = LocalStorage(root)
    await storage.put("ab/cd/one.webp", b"1", "image/webp")
    await storage.put("ab/ce/two.webp", b"2", "image/webp")
    await storage.delete("ab/cd/one.webp")
    assert not (root / "ab" / "cd").exists() and (root / "ab" / "ce" / "two.webp").is_file()
    await storage.delete("ab/ce/two.webp")
    assert root.is_dir() and list(root.iterdir()) == []
    await storage.delete("ab/ce/two.webp")  # deleting what is not there is still not an error
    await storage.put("ab/cd/one.webp", b"1", "image/webp")  # and the folders come back when needed
    assert await storage.get("ab/cd/one.webp") == b"1"
