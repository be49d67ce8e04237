"""The S3 backend against moto's S3 server, through obstore (tests/fakes/moto_s3.py): what the
storage contract does not cover (multipart, object headers, presigned URLs, prefixes, errors),
and the whole CLI storing a run of the example posts into a bucket."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx2 as httpx
import pytest
from starlette.testclient import TestClient

from blogimg.api.app import create_app
from blogimg.config import Settings
from blogimg.errors import StorageError
from blogimg.storage.s3 import CACHE_CONTROL, S3Storage
from tests.fakes import moto_s3
from tests.fakes.moto_s3 import (
    ACCESS_KEY_ID,
    SECRET_ACCESS_KEY,
    create_bucket,
    environment,
    make_public,
    remove_bucket,
    s3_client,
    storage_on,
)
from tests.support import API_KEY, AUTH, EXAMPLES, query, referenced_keys, run_cli

moto_s3_endpoint = moto_s3.moto_s3_endpoint  # the fixtures, where pytest looks for them
s3_storage = moto_s3.s3_storage


@pytest.fixture
def private_bucket(moto_s3_endpoint: str) -> Iterator[str]:
    """A bucket whose objects nobody may GET without a signature."""
    bucket = create_bucket(moto_s3_endpoint, public=False)
    yield bucket
    remove_bucket(moto_s3_endpoint, bucket)


async def test_a_large_object_goes_up_in_parts_with_its_headers(s3_storage: S3Storage, moto_s3_endpoint: str) -> None:
    data = os.urandom(20 * 1024 * 1024)
    await s3_storage.put("big/original.png", data, "image/png")
    await s3_storage.put("small/thumb.webp", b"RIFF....WEBP", "image/webp")
    client = s3_client(moto_s3_endpoint)
    big = client.head_object(Bucket=s3_storage.bucket, Key=s3_storage.prefix + "big/original.png")
    small = client.head_object(Bucket=s3_storage.bucket, Key=s3_storage.prefix + "small/thumb.webp")
    # S3 (and moto) give a multipart object the ETag "<md5 of the parts' md5s>-<parts>": 8 + 8 + 4 MiB.
    assert big["ETag"].strip('"').endswith("-3"), big["ETag"]
    assert "-" not in small["ETag"]  # one PUT
    assert (big["ContentType"], big["CacheControl"], big["ContentLength"]) == ("image/png", CACHE_CONTROL, len(data))
    assert (small["ContentType"], small["CacheControl"]) == ("image/webp", CACHE_CONTROL)
    async with httpx.AsyncClient(timeout=30) as http:  # what a browser is told
        served = await http.get(s3_storage.url("small/thumb.webp"))
    assert served.status_code == 200
    assert (served.headers["content-type"], served.headers["cache-control"]) == ("image/webp", CACHE_CONTROL)


async def test_presigned_urls(moto_s3_endpoint: str, private_bucket: str) -> None:
    """With STORAGE_URL_EXPIRY a private bucket's files are reachable through signed URLs only.

    moto checks neither the signature nor the expiry of a presigned URL (it lets any URL that
    carries the query parameters through), so what S3 would check is asserted on the URL itself.
    """
    signed = storage_on(moto_s3_endpoint, private_bucket, prefix="blog/", url_expiry=1)
    public = storage_on(moto_s3_endpoint, private_bucket, prefix="blog/")
    await signed.put("a b/ünï.png", b"signed bytes", "image/png")
    url = signed.url("a b/ünï.png")
    before = datetime.now(UTC).replace(microsecond=0)
    async with httpx.AsyncClient(timeout=30) as http:
        assert (await http.get(public.url("a b/ünï.png"))).status_code == 403  # private: no anonymous GET
        answer = await http.get(url)
    assert answer.status_code == 200 and answer.content == b"signed bytes"
    parts = urlsplit(url)
    assert parts.path == f"/{private_bucket}/blog/a%20b/%C3%BCn%C3%AF.png"
    parameters = {name: values[0] for name, values in parse_qs(parts.query).items()}
    assert parameters["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert parameters["X-Amz-Expires"] == "1"
    assert parameters["X-Amz-Credential"].startswith(ACCESS_KEY_ID + "/")
    assert len(parameters["X-Amz-Signature"]) == 64
    assert SECRET_ACCESS_KEY not in url
    signed_at = datetime.strptime(parameters["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert abs((signed_at - before).total_seconds()) <= 5  # so S3 refuses it a second after it was made
    assert (await signed.put("x/y.png", b"", "image/png")).url.startswith(moto_s3_endpoint)


async def test_list_sees_only_its_prefix_and_strips_it(s3_storage: S3Storage, moto_s3_endpoint: str) -> None:
    neighbour = storage_on(moto_s3_endpoint, s3_storage.bucket, prefix=s3_storage.prefix.rstrip("/") + "-other")
    started = time.time()
    for key in ("ab/x.png", "abc/y.png", "b/z.png"):
        await s3_storage.put(key, key.encode(), "image/png")
    await neighbour.put("ab/not-mine.png", b"-", "image/png")
    client = s3_client(moto_s3_endpoint)  # things another tool left under the prefix: not keys
    # (A console's "folder/" marker cannot be told apart: obstore lists it as "folder".)
    for foreign in (".hidden", "ab/.DS_Store", "b/ trailing space.png "):
        client.put_object(Bucket=s3_storage.bucket, Key=s3_storage.prefix + foreign, Body=b"x")

    listed = [stored async for stored in s3_storage.list()]
    assert [stored.key for stored in listed] == ["ab/x.png", "abc/y.png", "b/z.png"]
    assert [stored.size for stored in listed] == [8, 9, 7]
    assert all(stored.url == s3_storage.url(stored.key) for stored in listed)
    assert all(stored.modified is not None and started - 5 <= stored.modified <= time.time() + 5 for stored in listed)
    assert [stored.key async for stored in s3_storage.list("ab")] == ["ab/x.png", "abc/y.png"]  # not folder-wise
    assert [stored.key async for stored in s3_storage.list("ab/")] == ["ab/x.png"]
    assert [stored.key async for stored in s3_storage.list("../")] == []
    assert [stored.key async for stored in neighbour.list()] == ["ab/not-mine.png"]


async def test_many_operations_at_once(s3_storage: S3Storage) -> None:
    keys = [f"{n % 7:02d}/image-{n}.webp" for n in range(60)]
    await asyncio.gather(*(s3_storage.put(key, key.encode() * 100, "image/webp") for key in keys))
    got = await asyncio.gather(*(s3_storage.get(key) for key in keys))
    assert got == [key.encode() * 100 for key in keys]
    assert all(await asyncio.gather(*(s3_storage.exists(key) for key in keys)))
    await asyncio.gather(*(s3_storage.delete(key) for key in keys[::2]))
    assert [stored.key async for stored in s3_storage.list()] == sorted(keys[1::2])


async def test_every_failure_is_one_line_naming_the_key_and_the_operation(moto_s3_endpoint: str) -> None:
    missing_bucket = storage_on(moto_s3_endpoint, "no-such-bucket-anywhere")
    attempts = {"upload": missing_bucket.put("a/b.png", b"x", "image/png"), "download": missing_bucket.get("a/b.png"),
                "delete": missing_bucket.delete("a/b.png")}
    for operation, attempt in attempts.items():
        with pytest.raises(StorageError) as caught:
            await attempt
        message = str(caught.value)
        assert message.startswith(f"S3 {operation} of 'a/b.png' in bucket 'no-such-bucket-anywhere' failed")
        assert "NoSuchBucket" in message and "\n" not in message and "<?xml" not in message
        assert SECRET_ACCESS_KEY not in message
    with pytest.raises(StorageError, match=r"^S3 list of .*NoSuchBucket"):
        [stored async for stored in missing_bucket.list()]

    with refused_port() as port:
        unreachable = storage_on(f"http://127.0.0.1:{port}", "some-bucket", retry={"max_retries": 0})
        with pytest.raises(StorageError) as caught:
            await unreachable.get("a/b.png")
    message = str(caught.value)
    assert message.startswith("S3 download of 'a/b.png'") and "\n" not in message and len(message) < 500


async def test_an_endpoint_that_never_answers_fails_within_the_bound() -> None:
    """A store that accepts connections and then says nothing (a hung load balancer) fails the
    operation once the request timeout and the retry budget are spent, not after obstore's
    defaults (30 s a request, 10 retries within 3 minutes)."""
    with silent_port() as port:
        silent = S3Storage("some-bucket", endpoint=f"http://127.0.0.1:{port}", config=moto_s3.CREDENTIALS,
                           retry={"max_retries": 1, "retry_timeout": timedelta(seconds=2),
                                  "backoff": {"init_backoff": timedelta(milliseconds=10),
                                              "max_backoff": timedelta(milliseconds=50), "base": 2}},
                           request_timeout=timedelta(seconds=1), connect_timeout=timedelta(seconds=1))
        started = time.monotonic()
        with pytest.raises(StorageError, match=r"^S3 upload of 'a/b.png'"):
            await silent.put("a/b.png", b"x" * 1000, "image/png")
    assert time.monotonic() - started < 8


@contextlib.contextmanager
def silent_port() -> Iterator[int]:
    """A loopback port that accepts every connection and never answers on it."""
    held: list[socket.socket] = []
    listener = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:  # closed
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        listener.close()
        for connection in held:
            connection.close()


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port that is bound but never listens: every connection to it is refused."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield int(bound.getsockname()[1])


def test_generate_the_examples_into_a_bucket(tmp_path: Path, moto_s3_endpoint: str, private_bucket: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """``blogimg generate`` stores every file in the bucket under the prefix, and every URL the API
    then gives answers: presigned ones on the private bucket, public ones once it is public."""
    data = tmp_path / "data"
    variables = environment(moto_s3_endpoint, private_bucket)
    run = run_cli("generate", str(EXAMPLES), data=data, cwd=tmp_path, BLOGIMG_STORAGE_PREFIX="/blog",
                  BLOGIMG_AVIF_EFFORT="0", **variables)
    assert run.returncode == 0, run.stderr
    assert not (data / "images").exists()  # nothing on local disk

    database = data / "blogimg.db"
    keys = referenced_keys(database)
    assert len(keys) >= 5 * 3 and query(database, "SELECT count(*) FROM generated_images WHERE status != 'succeeded'") == [(0,)]
    objects = {item["Key"]: item for page in s3_client(moto_s3_endpoint).get_paginator("list_objects_v2").paginate(
        Bucket=private_bucket) for item in page.get("Contents", [])}
    assert {key.removeprefix("blog/") for key in objects} == keys and all(key.startswith("blog/") for key in objects)

    for name, value in variables.items():  # the API in this process reads them as a deployment would
        monkeypatch.setenv(name, value)
    settings = Settings(database_url=f"sqlite+aiosqlite:///{database}", storage="s3", storage_bucket=private_bucket,
                        storage_prefix="blog", storage_url_expiry=600, api_keys=[API_KEY])
    signed = api_urls(settings)
    assert len(signed) == len(keys) and all("X-Amz-Signature=" in url for url in signed)
    assert_all_answer(signed)

    make_public(moto_s3_endpoint, private_bucket)
    public = api_urls(settings.model_copy(update={"storage_url_expiry": None}))
    assert all(url.startswith(f"{moto_s3_endpoint}/{private_bucket}/blog/") and "?" not in url for url in public)
    assert_all_answer(public)


def api_urls(settings: Settings) -> set[str]:
    """Every file URL of every image the API lists (original, thumbnail, variants)."""
    urls: set[str] = set()
    with TestClient(create_app(settings), headers=AUTH) as client:
        cursor = None
        while True:
            page = client.get("/api/images/search", params={"limit": 100, **({"cursor": cursor} if cursor else {})})
            assert page.status_code == 200, page.text
            for image in page.json()["items"]:
                urls |= {image["url"], image["thumbnail_url"], *(variant["url"] for variant in image["variants"])}
            if not (cursor := page.json()["next_cursor"]):
                return urls


def assert_all_answer(urls: set[str]) -> None:
    with httpx.Client(timeout=30) as http:
        for url in sorted(urls):
            answer = http.get(url)
            assert answer.status_code == 200, (url, answer.status_code)
            assert answer.headers["content-type"].startswith("image/") and answer.content

