"""The Cloudinary backend beyond the storage contract: its public ids, what it asks of which API,
its configuration and its errors. Through the official SDK against tests/fakes/cloudinary_api.py."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

import pytest

from blogimg.config import Settings
from blogimg.errors import ConfigurationError, InvalidKeyError, StorageError
from blogimg.storage import build_storage
from blogimg.storage.audit import AuditedStorage
from blogimg.storage.cdn import CdnUrls
from blogimg.storage.cloudinary import (
    EMPTY_MARKER,
    EMPTY_TAG,
    CloudinaryStorage,
    decode_public_id,
    encode_public_id,
)
from tests.fakes.cloudinary_api import API_KEY, API_SECRET, FakeCloudinary


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeCloudinary]:
    with FakeCloudinary() as server:
        yield server


def _storage(fake: FakeCloudinary, monkeypatch: pytest.MonkeyPatch, cloud: str, prefix: str = "blog/",
             secret: str = API_SECRET) -> CloudinaryStorage:
    monkeypatch.delenv("CLOUDINARY_CLOUD_NAME", raising=False)
    monkeypatch.setenv("CLOUDINARY_URL", fake.cloudinary_url(cloud, secret=secret))
    return CloudinaryStorage.from_settings(Settings(storage="cloudinary", storage_prefix=prefix))


@pytest.mark.parametrize(("key", "public_id"), [
    ("ab/cd/abcd.webp", "ab/cd/abcd.webp"),
    ("white space/a picture.webp", "white_20space/a_20picture.webp"),
    ("ünïcode/日本語の名前.png", "ünïcode/日本語の名前.png"),  # language characters are allowed
    ("emoji 🙂/x.jpg", "emoji_20_F0_9F_99_82/x.jpg"),
    ("percent%20and+plus.avif", "percent_2520and_2Bplus.avif"),  # % and + are forbidden
    ("snake_case.png", "snake_5Fcase.png"),  # the escape character itself
    ("v2/v10.png", "_762/_7610.png"),  # a v<digits> folder reads as a version
    ("video/x.png", "video/x.png"),
    ("a:b/?&#<>.png", "a_3Ab/_3F_26_23_3C_3E.png"),
    (unicodedata.normalize("NFD", "ü.png"), "u_CC_88.png"),  # a combining mark is not a letter
])
def test_public_ids_keep_what_cloudinary_allows_and_encode_the_rest_reversibly(key: str, public_id: str) -> None:
    assert encode_public_id(key) == public_id
    assert decode_public_id(public_id) == key


@pytest.mark.parametrize("public_id", ["Some_thing.png", "x_zz.png", "bad_FF.png", "lower_e6_97_a5.png"])
def test_public_ids_not_written_by_blogimg_decode_to_nothing(public_id: str) -> None:
    assert decode_public_id(public_id) is None


async def test_keys_are_raw_resources_in_the_folder_and_the_hot_path_never_calls_the_admin_api(
        fake: FakeCloudinary, monkeypatch: pytest.MonkeyPatch) -> None:
    cloud = fake.new_cloud()
    storage = _storage(fake, monkeypatch, cloud)
    data = b"\x00\x01AVIF bytes, kept byte for byte\xff"
    await storage.put("white space/a picture.avif", data, "image/avif")
    assert fake.assets[(cloud, "raw", "blog/white_20space/a_20picture.avif")].data == data
    upload = next(call for call in fake.calls if call.api == "upload" and call.cloud == cloud)
    assert upload.fields["overwrite"] == "1" and upload.fields["type"] == "upload"
    assert upload.fields["invalidate"] == "1"  # a CDN-cached 404 or older bytes of the key are dropped
    assert await storage.get("white space/a picture.avif") == data
    assert await storage.exists("white space/a picture.avif")
    assert not await storage.exists("not/there.png")
    assert storage.url("white space/a picture.avif").endswith("/raw/upload/v1/blog/white_20space/a_20picture.avif")
    await storage.delete("white space/a picture.avif")
    destroy = next(call for call in fake.calls if call.api == "destroy" and call.cloud == cloud)
    assert destroy.fields["invalidate"] == "1"  # the CDN forgets it too
    assert fake.count("admin", cloud) == 0
    assert [stored async for stored in storage.list()] == []
    assert fake.count("admin", cloud) == 1


async def test_listing_follows_next_cursor_and_reports_sizes_and_creation_times(
        fake: FakeCloudinary, monkeypatch: pytest.MonkeyPatch) -> None:
    cloud = fake.new_cloud()
    storage = _storage(fake, monkeypatch, cloud)
    storage.page_size = 2
    keys = ["e/5.png", "a/1.png", "d/4 four.png", "b/2.png", "c/3.png"]
    for number, key in enumerate(keys):
        await storage.put(key, b"x" * (number + 1), "image/png")
    listed = [stored async for stored in storage.list()]
    assert [stored.key for stored in listed] == sorted(keys)
    assert {stored.key: stored.size for stored in listed} == {key: number + 1 for number, key in enumerate(keys)}
    assert all(stored.modified and stored.url == storage.url(stored.key) for stored in listed)
    assert fake.count("admin", cloud) == 3  # 2 + 2 + 1
    assert [stored.key async for stored in storage.list("d/4 f")] == ["d/4 four.png"]  # a partial name


async def test_listing_keeps_to_its_folder_and_skips_what_blogimg_did_not_write(
        fake: FakeCloudinary, monkeypatch: pytest.MonkeyPatch) -> None:
    cloud = fake.new_cloud()
    other = _storage(fake, monkeypatch, cloud, prefix="other")
    await other.put("a/1.png", b"other folder", "image/png")
    storage = _storage(fake, monkeypatch, cloud)
    await storage.put("a/1.png", b"ours", "image/png")
    fake.assets[(cloud, "raw", "blog/Uploaded_by_hand.png")] = \
        fake.assets[(cloud, "raw", "blog/a/1.png")]
    assert [stored.key async for stored in storage.list()] == ["a/1.png"]
    assert [stored.key async for stored in other.list()] == ["a/1.png"]
    assert await other.get("a/1.png") == b"other folder"


async def test_an_empty_object_is_stored_as_a_tagged_marker(
        fake: FakeCloudinary, monkeypatch: pytest.MonkeyPatch) -> None:
    cloud = fake.new_cloud()
    storage = _storage(fake, monkeypatch, cloud)
    await storage.put("empty.bin", b"", "application/octet-stream")
    asset = fake.assets[(cloud, "raw", "blog/empty.bin")]
    assert (asset.data, asset.tags) == (EMPTY_MARKER, [EMPTY_TAG])
    assert await storage.get("empty.bin") == b""
    await storage.put("empty.bin", b"now full", "application/octet-stream")
    assert await storage.get("empty.bin") == b"now full"
    assert [(stored.key, stored.size) async for stored in storage.list()] == [("empty.bin", 8)]
    with pytest.raises(StorageError, match="marker"):
        await storage.put("marker.bin", EMPTY_MARKER, "application/octet-stream")


async def test_a_wrong_secret_is_one_line_naming_the_key_without_the_credentials(
        fake: FakeCloudinary, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = _storage(fake, monkeypatch, fake.new_cloud(), secret="not-the-secret-42")
    with pytest.raises(StorageError) as caught:
        await storage.put("ab/wrong.png", b"data", "image/png")
    message = str(caught.value)
    assert "'ab/wrong.png'" in message and "Invalid Signature" in message and "\n" not in message
    with pytest.raises(StorageError) as listing:
        [stored async for stored in storage.list("ab/")]
    for text in (message, str(listing.value)):
        assert "not-the-secret-42" not in text and API_KEY not in text and API_SECRET not in text


async def test_a_cut_upload_names_the_key_and_nothing_secret(
        fake: FakeCloudinary, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = _storage(fake, monkeypatch, fake.new_cloud("broken"))
    with pytest.raises(StorageError) as caught:
        await storage.put("cut/off.png", b"y" * 1_000_000, "image/png")
    assert str(caught.value).startswith("Cloudinary could not store 'cut/off.png': ")
    assert API_SECRET not in str(caught.value)


def test_a_key_too_long_for_a_public_id_is_refused_before_any_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLOUDINARY_CLOUD_NAME", raising=False)
    monkeypatch.setenv("CLOUDINARY_URL", "cloudinary://k:s@demo")
    storage = CloudinaryStorage()
    with pytest.raises(InvalidKeyError, match="too long for Cloudinary"):
        storage.url("🙂" * 64 + ".png")  # 4 bytes, 12 characters each once encoded


@pytest.mark.parametrize(("url", "expected"), [
    ("cloudinary://k:s@demo", "https://res.cloudinary.com/demo/raw/upload/v1/blog/ab/c.webp"),
    ("cloudinary://k:s@demo?secure=false", "http://res.cloudinary.com/demo/raw/upload/v1/blog/ab/c.webp"),
    ("cloudinary://k:s@demo?cname=img.example.com", "http://img.example.com/demo/raw/upload/v1/blog/ab/c.webp"),
    ("cloudinary://k:s@demo/demo-res.example.com", "https://demo-res.example.com/raw/upload/v1/blog/ab/c.webp"),
])
def test_urls_are_the_sdks_own_built_offline(monkeypatch: pytest.MonkeyPatch, url: str, expected: str) -> None:
    monkeypatch.delenv("CLOUDINARY_CLOUD_NAME", raising=False)
    monkeypatch.setenv("CLOUDINARY_URL", url)
    assert CloudinaryStorage("blog/").url("ab/c.webp") == expected


@pytest.mark.parametrize(("environment", "message"), [
    ({}, "needs CLOUDINARY_URL=cloudinary://API_KEY:API_SECRET@CLOUD_NAME"),
    ({"CLOUDINARY_URL": "cloudinary://123@demo"}, "needs CLOUDINARY_URL"),
    ({"CLOUDINARY_URL": "https://123:topsecret@demo"}, "must look like cloudinary://"),
    ({"CLOUDINARY_URL": "cloudinary://123:topsecret@demo", "CLOUDINARY_CLOUD_NAME": "demo"}, "unset one"),
])
def test_configuration_is_checked_in_one_line_without_secrets(
        monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], message: str) -> None:
    for name in ("CLOUDINARY_URL", "CLOUDINARY_CLOUD_NAME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=re.escape(message)) as caught:
        CloudinaryStorage()
    assert "topsecret" not in str(caught.value)


def test_a_folder_that_is_not_a_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLOUDINARY_CLOUD_NAME", raising=False)
    monkeypatch.setenv("CLOUDINARY_URL", "cloudinary://k:s@demo")
    with pytest.raises(ConfigurationError, match="STORAGE_PREFIX"):
        CloudinaryStorage("../up")


def test_the_factory_builds_it_behind_a_cdn_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLOUDINARY_CLOUD_NAME", raising=False)
    monkeypatch.setenv("CLOUDINARY_URL", "cloudinary://k:s@demo")
    built = build_storage(Settings(storage="cloudinary"))
    assert isinstance(built, AuditedStorage) and isinstance(built.storage, CloudinaryStorage)
    behind = build_storage(Settings(storage="cloudinary", cdn_base_url="https://img.example.com/"))
    assert isinstance(behind, AuditedStorage) and isinstance(behind.storage, CdnUrls)
    assert isinstance(behind.storage.storage, CloudinaryStorage)


async def test_a_service_that_never_answers_fails_within_the_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    """An API host that accepts the connection and says nothing (a hung load balancer): the upload
    fails once the read timeout is spent (the SDK alone would wait forever), and a POST whose
    answer was lost is not sent again."""
    import asyncio
    import socket
    import threading
    import time

    held: list[socket.socket] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        def accept() -> None:
            while True:
                try:
                    held.append(listener.accept()[0])
                except OSError:  # closed
                    return

        threading.Thread(target=accept, daemon=True).start()
        host = f"127.0.0.1:{listener.getsockname()[1]}"
        monkeypatch.delenv("CLOUDINARY_CLOUD_NAME", raising=False)
        monkeypatch.setenv("CLOUDINARY_URL", f"cloudinary://{API_KEY}:{API_SECRET}@silent"
                                             f"?upload_prefix=http://{host}&cname={host}")
        storage = CloudinaryStorage.from_settings(Settings(storage="cloudinary", storage_prefix="blog/"))
        storage.connect_timeout = storage.read_timeout = 1.0
        started = time.monotonic()
        with pytest.raises(StorageError, match=r"^Cloudinary could not store 'a/b.png': "):
            await asyncio.wait_for(storage.put("a/b.png", b"png", "image/png"), 20)
        assert time.monotonic() - started < 8
        assert len(held) == 1  # one connection: the upload was not retried
    for connection in held:
        connection.close()
