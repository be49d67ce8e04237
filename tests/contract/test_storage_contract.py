"""One suite, every storage backend: what the Storage Protocol promises (tests/contract/conftest.py
gives each backend in turn, empty)."""

from __future__ import annotations

import hashlib
import os

import httpx2 as httpx
import pytest

from blogimg.errors import InvalidKeyError, StorageError
from blogimg.storage import Storage
from tests.contract.conftest import CLOUD_BACKENDS

BAD_KEYS = ["", "/etc/passwd", "../outside.txt", "a/../../outside.txt", "a/./b.txt", "a//b.txt",
            "a\\b.txt", ".hidden", "a/.hidden", "a/b/", " lead.txt", "trail.txt ", "nul\x00.txt", "rtl\u202egnp.exe",
            "x" * 600]
ODD_NAMES = ["white space/a picture.webp", "ünïcode/日本語の名前.png", "emoji 🙂/x.jpg", "percent%20and+plus.avif"]


async def _listed(storage: Storage, prefix: str = "") -> list[str]:
    return [stored.key async for stored in storage.list(prefix)]


async def _served(storage: Storage, key: str) -> bytes | None:
    """What the key's public URL answers, or None where the URL is not an HTTP one (memory, a
    local folder behind a base that nothing serves here)."""
    url = storage.url(key)
    if not url.startswith(("http://127.0.0.1", "http://localhost")):
        return None
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.get(url)
    assert response.status_code == 200, (url, response.status_code, response.text[:200])
    return response.content


async def test_put_get_exists_delete_list(storage: Storage) -> None:
    stored = await storage.put("ab/cd/abcd.webp", b"first", "image/webp")
    assert (stored.key, stored.size) == ("ab/cd/abcd.webp", 5)
    assert stored.url == storage.url("ab/cd/abcd.webp")
    assert await storage.get("ab/cd/abcd.webp") == b"first"
    assert await storage.exists("ab/cd/abcd.webp")
    assert await _served(storage, "ab/cd/abcd.webp") in (None, b"first")
    await storage.put("zz/other.jpg", b"x", "image/jpeg")
    assert await _listed(storage) == ["ab/cd/abcd.webp", "zz/other.jpg"]
    assert await _listed(storage, "zz/") == ["zz/other.jpg"]
    listed = {stored.key: stored async for stored in storage.list()}
    assert listed["ab/cd/abcd.webp"].size == 5
    assert listed["ab/cd/abcd.webp"].url == storage.url("ab/cd/abcd.webp")
    await storage.delete("ab/cd/abcd.webp")
    await storage.delete("ab/cd/abcd.webp")  # deleting what is gone is fine
    assert not await storage.exists("ab/cd/abcd.webp")
    assert await _listed(storage) == ["zz/other.jpg"]
    with pytest.raises(StorageError, match="no stored file"):
        await storage.get("ab/cd/abcd.webp")


async def test_putting_the_same_key_again_is_harmless(storage: Storage) -> None:
    """Keys are content-addressed, so a second put (a job run again after a crash) writes the same
    bytes: it must succeed, and leave one object."""
    key = "9f/86/9f86d081884c7d659a2feaa0c55ad015.webp"
    first = await storage.put(key, b"same bytes", "image/webp")
    second = await storage.put(key, b"same bytes", "image/webp")
    assert first.url == second.url == storage.url(key)
    assert await storage.get(key) == b"same bytes"
    assert await _listed(storage) == [key]


@pytest.mark.parametrize("key", ODD_NAMES)
async def test_unicode_and_spaces_in_names(storage: Storage, key: str) -> None:
    await storage.put(key, key.encode(), "image/png")
    assert await storage.get(key) == key.encode()
    assert await storage.exists(key)
    assert await _listed(storage) == [key]
    assert " " not in storage.url(key)  # percent-encoded
    assert await _served(storage, key) in (None, key.encode())
    await storage.delete(key)
    assert not await storage.exists(key)


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
    assert await _listed(storage) == []


async def test_an_empty_object(storage: Storage) -> None:
    stored = await storage.put("empty/nothing.bin", b"", "application/octet-stream")
    assert stored.size == 0
    assert await storage.get("empty/nothing.bin") == b""
    assert await storage.exists("empty/nothing.bin")
    assert [(o.key, o.size) async for o in storage.list()] == [("empty/nothing.bin", 0)]


async def test_a_20_megabyte_object(storage: Storage) -> None:
    data = os.urandom(20 * 1024 * 1024)
    stored = await storage.put("big/original.png", data, "image/png")
    assert stored.size == len(data)
    back = await storage.get("big/original.png")
    assert hashlib.sha256(back).digest() == hashlib.sha256(data).digest()
    assert [(o.key, o.size) async for o in storage.list("big/")] == [("big/original.png", len(data))]
    served = await _served(storage, "big/original.png")
    assert served is None or hashlib.sha256(served).digest() == hashlib.sha256(data).digest()


@pytest.mark.parametrize("backend", CLOUD_BACKENDS)  # local disk: a full disk is tests/integration/test_database_failures.py
async def test_a_failure_mid_upload_is_one_clear_error(backend: str, request: pytest.FixtureRequest) -> None:
    broken: Storage = request.getfixturevalue(f"broken_{backend.replace('-', '_')}_storage")
    with pytest.raises(StorageError) as caught:
        await broken.put("cut/off.png", os.urandom(2 * 1024 * 1024), "image/png")
    message = str(caught.value)
    assert "cut/off.png" in message and "\n" not in message and "Traceback" not in message
    # Nothing half-written is left under the key. Every broken fixture cuts only uploads (a request
    # with a body), so the same storage can still answer whether the key exists.
    assert not await broken.exists("cut/off.png")
