"""Vercel Blob beyond the storage contract: credentials, what goes over the wire, pages, prefixes,
URLs and the network it reaches, all through the official SDK against the loopback fake."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx2 as httpx
import pytest

from blogimg.config import Settings
from blogimg.errors import ConfigurationError, StorageError
from blogimg.storage import build_storage
from blogimg.storage.vercel_blob import CACHE_MAX_AGE, VercelBlobStorage
from tests.fakes.vercel_blob_api import FakeVercelBlob, Store, store_settings, vercel_blob_api  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(vercel_blob_api: FakeVercelBlob) -> Store:  # noqa: F811
    return vercel_blob_api.new_store()


def _storage(fake: FakeVercelBlob, store: Store, prefix: str = "") -> VercelBlobStorage:
    return VercelBlobStorage(store.token, api_url=fake.api_url, prefix=prefix)


def test_a_missing_token_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BLOB_READ_WRITE_TOKEN", raising=False)
    with pytest.raises(ConfigurationError, match="needs BLOB_READ_WRITE_TOKEN") as caught:
        build_storage(Settings(storage="vercel-blob"))
    assert "\n" not in str(caught.value)


def test_a_malformed_token_is_refused_without_repeating_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLOB_READ_WRITE_TOKEN", "sk-not-a-blob-token-s3cr3t")
    with pytest.raises(ConfigurationError, match="not a Vercel Blob read-write token") as caught:
        build_storage(Settings(storage="vercel-blob"))
    assert "s3cr3t" not in str(caught.value)


def test_a_prefix_that_is_not_a_folder_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLOB_READ_WRITE_TOKEN", "vercel_blob_rw_abc123_secret")
    with pytest.raises(ConfigurationError, match="STORAGE_PREFIX"):
        build_storage(Settings(storage="vercel-blob", storage_prefix="../up/"))


async def test_a_refused_token_is_one_error_without_the_token(vercel_blob_api: FakeVercelBlob,  # noqa: F811
                                                              store: Store) -> None:
    wrong = Store(store.store_id, "not-the-secret")
    storage = VercelBlobStorage(wrong.token, api_url=vercel_blob_api.api_url)
    with pytest.raises(StorageError) as caught:
        await storage.put("a/b.png", b"x", "image/png")
    message = str(caught.value)
    assert message.startswith("Vercel Blob: cannot store 'a/b.png': Access denied")
    assert "not-the-secret" not in message and "not-the-secret" not in repr(storage)


async def test_an_api_that_is_down_is_one_error_naming_key_and_operation() -> None:
    with socket.socket() as placeholder:  # a port nothing listens on
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    storage = VercelBlobStorage("vercel_blob_rw_abc123_secret", api_url=f"http://127.0.0.1:{port}/api/blob")
    for operation, call in [("read", storage.get("a/b.png")), ("delete", storage.delete("a/b.png"))]:
        with pytest.raises(StorageError, match=rf"^Vercel Blob: cannot {operation} 'a/b.png': ConnectError"):
            await call


async def test_put_sends_the_documented_headers_and_the_blob_is_served_with_them(
        vercel_blob_api: FakeVercelBlob, store: Store) -> None:  # noqa: F811
    storage = _storage(vercel_blob_api, store, "blog/")
    stored = await storage.put("ab/cd/ef.webp", b"RIFF....WEBP", "image/webp")
    put = [seen for seen in vercel_blob_api.requests
           if seen.method == "PUT" and store.token in seen.headers["authorization"]][-1]
    assert put.path.startswith("/api/blob?pathname=blog%2Fab%2Fcd%2Fef.webp")
    assert {name: put.headers.get(name) for name in ("x-api-version", "x-vercel-blob-access", "x-content-type",
                                                     "x-add-random-suffix", "x-allow-overwrite",
                                                     "x-cache-control-max-age")} == {
        "x-api-version": "12", "x-vercel-blob-access": "public", "x-content-type": "image/webp",
        "x-add-random-suffix": "0", "x-allow-overwrite": "1", "x-cache-control-max-age": str(CACHE_MAX_AGE)}
    assert set(store.blobs) == {"blog/ab/cd/ef.webp"}  # the pathname is prefix + key, no suffix
    async with httpx.AsyncClient() as client:
        served = await client.get(stored.url)
    assert served.content == b"RIFF....WEBP"
    assert served.headers["content-type"] == "image/webp"
    assert served.headers["cache-control"] == f"public, max-age={CACHE_MAX_AGE}"


async def test_the_api_refuses_a_second_put_without_allow_overwrite(vercel_blob_api: FakeVercelBlob,  # noqa: F811
                                                                    store: Store,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Why put sends allow-overwrite: without it, the re-put of a content-addressed key (a job run
    again after a crash) is an error. The SDK straight against the fake, as the API behaves."""
    from vercel.blob import BlobError, put_blob

    monkeypatch.setenv("BLOB_READ_WRITE_TOKEN", store.token)
    monkeypatch.setenv("VERCEL_BLOB_API_URL", vercel_blob_api.api_url)
    from vercel.api import session

    async with session():
        await put_blob("k/one.png", b"same", access="public")
        with pytest.raises(BlobError, match="This blob already exists"):
            await put_blob("k/one.png", b"same", access="public")
    await _storage(vercel_blob_api, store).put("k/one.png", b"same", "image/png")  # ours: fine


async def test_list_follows_the_cursor_strips_the_prefix_and_keeps_to_it(vercel_blob_api: FakeVercelBlob,  # noqa: F811
                                                                         store: Store) -> None:
    ours, other = _storage(vercel_blob_api, store, "blog/"), _storage(vercel_blob_api, store, "other/")
    keys = ["c/3.png", "a/1.png", "e/5.png", "b/2.png", "d/4.png"]
    for key in keys:
        await ours.put(key, key.encode(), "image/png")
    await other.put("a/1.png", b"not ours", "image/png")
    before = len(vercel_blob_api.requests)
    listed = [stored async for stored in ours.list()]
    pages = [seen for seen in vercel_blob_api.requests[before:] if seen.method == "GET"]
    assert [stored.key for stored in listed] == sorted(keys)
    assert [stored.size for stored in listed] == [7] * 5
    assert all(stored.modified and stored.url == ours.url(stored.key) for stored in listed)
    assert len(pages) == 3 and "cursor=" in pages[1].path and "cursor=" in pages[2].path  # 2 + 2 + 1
    assert [stored.key async for stored in ours.list("d/")] == ["d/4.png"]
    assert [stored.key async for stored in other.list()] == ["a/1.png"]


async def test_a_large_put_goes_up_in_parts(vercel_blob_api: FakeVercelBlob, store: Store) -> None:  # noqa: F811
    storage = _storage(vercel_blob_api, store)
    data = os.urandom(20 * 1024 * 1024)
    before = len(vercel_blob_api.requests)
    await storage.put("big/original.png", data, "image/png")
    actions = [seen.headers.get("x-mpu-action") for seen in vercel_blob_api.requests[before:]]
    assert actions == ["create", "upload", "upload", "upload", "complete"]  # 8 + 8 + 4 MiB
    assert store.blobs["big/original.png"].data == data
    assert store.blobs["big/original.png"].content_type == "image/png"


def test_urls_without_any_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """On Vercel's API the URL is the store's public host, built from the token's store id (no
    request: commands that only build URLs stay offline); ``public_base_url`` overrides it."""
    monkeypatch.setenv("BLOB_READ_WRITE_TOKEN", "vercel_blob_rw_AbC123_secret")
    monkeypatch.delenv("VERCEL_BLOB_API_URL", raising=False)
    storage = build_storage(Settings(storage="vercel-blob", storage_prefix="blog"))
    assert storage.url("white space/ü.png") == (
        "https://abc123.public.blob.vercel-storage.com/blog/white%20space/%C3%BC.png")
    pinned = VercelBlobStorage("vercel_blob_rw_abc123_secret", public_base_url="https://img.example.test/")
    assert pinned.url("a/b.png") == "https://img.example.test/a/b.png"


async def test_a_loopback_store_is_served_where_its_api_says(vercel_blob_api: FakeVercelBlob,  # noqa: F811
                                                             store: Store) -> None:
    storage = _storage(vercel_blob_api, store, "blog/")
    assert [stored async for stored in storage.list()] == []
    await _storage(vercel_blob_api, store, "blog/").put("x/y z.png", b"png", "image/png")
    fresh = _storage(vercel_blob_api, store, "blog/")
    assert await fresh.exists("x/y z.png")  # the head's answer names the base
    assert fresh.url("x/y z.png") == vercel_blob_api.delivery_url(store, "blog/x/y z.png")


def test_only_the_api_base_is_reached_and_no_telemetry_is_loaded(vercel_blob_api: FakeVercelBlob,  # noqa: F811
                                                                 store: Store) -> None:
    """In a process of its own (import time and exit included): every connection and name lookup
    is recorded by an audit hook; only the fake's loopback port may appear."""
    script = textwrap.dedent(f"""
        import asyncio, json, sys
        reached = []
        def audit(event, args):
            if event == "socket.connect":
                reached.append(repr(args[1]))
            elif event == "socket.getaddrinfo":
                reached.append(repr(args[:2]))
        sys.addaudithook(audit)
        import atexit
        from blogimg.storage.vercel_blob import VercelBlobStorage
        async def main():
            storage = VercelBlobStorage({store.token!r}, api_url={vercel_blob_api.api_url!r})
            await storage.put("a/b.png", b"png", "image/png")
            assert await storage.get("a/b.png") == b"png"
            assert [o.key async for o in storage.list()] == ["a/b.png"]
            await storage.delete("a/b.png")
        asyncio.run(main())
        atexit.register(lambda: print(json.dumps({{"reached": reached, "modules": sorted(sys.modules),
                                                   "telemetry_off": __import__("os").environ.get(
                                                       "VERCEL_TELEMETRY_DISABLED")}})))
    """)
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith(("VERCEL", "BLOB_"))}
    environment["PYTHONPATH"] = str(ROOT / "src")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env=environment, check=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    port = vercel_blob_api.url.rsplit(":", 1)[1]
    assert report["reached"] and all("127.0.0.1" in entry and port in entry for entry in report["reached"])
    assert not [name for name in report["modules"] if "telemetry" in name or "oidc" in name]
    assert report["telemetry_off"] == "1"


async def test_a_download_url_on_another_host_is_refused_unread(vercel_blob_api: FakeVercelBlob,  # noqa: F811
                                                                 store: Store) -> None:
    """An API answer naming a blob's ``url`` on a host that is not the store's (a wrong or hostile
    answer) is one StorageError, and that host gets no request: no fetching wherever it points."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    reached: list[str] = []

    class Foreign(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            reached.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "3")
            self.end_headers()
            self.wfile.write(b"png")  # the size the head names: before the fix, get returned it

        def log_message(self, format: str, *args: object) -> None:
            return None

    with ThreadingHTTPServer(("127.0.0.1", 0), Foreign) as foreign:
        Thread(target=foreign.serve_forever, daemon=True).start()
        store.delivery_origin = f"http://127.0.0.1:{foreign.server_port}"
        try:
            storage = _storage(vercel_blob_api, store, "blog/")
            await storage.put("a/b.png", b"png", "image/png")
            with pytest.raises(StorageError, match=r"cannot read 'a/b.png'.*not the store's") as caught:
                await storage.get("a/b.png")
            assert "\n" not in str(caught.value) and store.token not in str(caught.value)
            assert not storage.url("a/b.png").startswith(store.delivery_origin)  # nor learned from such an answer
        finally:
            foreign.shutdown()
    assert reached == []
