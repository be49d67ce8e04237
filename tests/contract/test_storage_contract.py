"""One suite, every storage backend: what the Storage Protocol promises."""

from __future__ import annotations

from pathlib import Path

import pytest

from blogimg.errors import InvalidKeyError, StorageError
from blogimg.storage import LocalStorage, MemoryStorage, Storage

BAD_KEYS = ["", "/etc/passwd", "../outside.txt", "a/../../outside.txt", "a/./b.txt", "a//b.txt",
            "a\\b.txt", ".hidden", "a/.hidden", "a/b/", "white space.txt", "nul\x00.txt", "x" * 600]


@pytest.fixture(params=["local", "memory"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "store", "https://cdn.example.test/img/")
    return MemoryStorage("https://cdn.example.test/img/")


async def test_put_get_exists_delete_list(storage: Storage) -> None:
    stored = await storage.put("ab/cd/abcd.webp", b"first", "image/webp")
    assert (stored.key, stored.size) == ("ab/cd/abcd.webp", 5)
    assert stored.url == storage.url("ab/cd/abcd.webp") == "https://cdn.example.test/img/ab/cd/abcd.webp"
    assert await storage.get("ab/cd/abcd.webp") == b"first"
    assert await storage.exists("ab/cd/abcd.webp")
    await storage.put("ab/cd/abcd.webp", b"second", "image/webp")  # same key again: replaced whole
    assert await storage.get("ab/cd/abcd.webp") == b"second"
    await storage.put("zz/other.jpg", b"x", "image/jpeg")
    assert [o.key async for o in storage.list()] == ["ab/cd/abcd.webp", "zz/other.jpg"]
    assert [o.key async for o in storage.list("zz/")] == ["zz/other.jpg"]
    await storage.delete("ab/cd/abcd.webp")
    await storage.delete("ab/cd/abcd.webp")  # deleting what is gone is fine
    assert not await storage.exists("ab/cd/abcd.webp")
    with pytest.raises(StorageError, match="no stored file"):
        await storage.get("ab/cd/abcd.webp")


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_unsafe_keys_are_rejected_by_every_method(storage: Storage, key: str) -> None:
    with pytest.raises(InvalidKeyError):
        await storage.put(key, b"data", "image/png")
    with pytest.raises(InvalidKeyError):
        await storage.get(key)
    with pytest.raises(InvalidKeyError):
        await storage.exists(key)
    with pytest.raises(InvalidKeyError):
        await storage.delete(key)
    with pytest.raises(InvalidKeyError):
        storage.url(key)
