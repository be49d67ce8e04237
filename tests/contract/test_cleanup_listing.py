"""Cleanup over what a backend really holds: names that are not keys (a ``.DS_Store`` a Finder left,
a file named with a leading space by some other tool) are not listed, so ``cleanup --apply``
neither trips over them nor deletes them; and a row committed while storage is being listed
keeps its file (storage is listed before the catalogue is read)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from blogimg.config import Settings
from blogimg.db.database import Database
from blogimg.db.jobs import PostsToEnqueue
from blogimg.domain import FinishedImage
from blogimg.pipeline.cleanup import find_orphans
from blogimg.pipeline.generate import read_posts
from blogimg.storage import LocalStorage, MemoryStorage, Storage, StoredObject
from blogimg.storage.s3 import S3Storage
from blogimg.storage.vercel_blob import VercelBlobStorage
from tests.fakes.moto_s3 import s3_client
from tests.fakes.vercel_blob_api import Blob, FakeVercelBlob
from tests.support import write_posts

STRAY_NAMES = [".DS_Store", "zz/ lead.png", "zz/.hidden.webp"]  #: no method could read or delete these
ORPHAN = "zz/yy/orphan.webp"


def _plant_local(storage: Storage, name: str) -> None:
    assert isinstance(storage, LocalStorage)
    path = storage.root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not ours")


def _plant_s3(storage: Storage, name: str) -> None:
    assert isinstance(storage, S3Storage) and storage.endpoint is not None
    s3_client(storage.endpoint).put_object(Bucket=storage.bucket, Key=storage.prefix + name, Body=b"not ours")


def _planter(backend: str, request: pytest.FixtureRequest) -> Callable[[Storage, str], None]:
    """How to put a file under a name that is not a key, as another tool would (past blogimg)."""
    if backend == "local":
        return _plant_local
    if backend == "s3":
        return _plant_s3
    fake: FakeVercelBlob = request.getfixturevalue("vercel_blob_api")

    def plant_vercel(storage: Storage, name: str) -> None:
        while not isinstance(storage, VercelBlobStorage):  # under the factory's wrappers (audit, CDN)
            storage = storage.storage  # type: ignore[attr-defined]
        fake.stores[storage.store_id].blobs[storage.prefix + name] = Blob(
            b"not ours", "application/octet-stream", "public, max-age=60", datetime.now(UTC), '"0"')

    return plant_vercel


@pytest.mark.parametrize("backend", ["local", "s3", "vercel-blob"])
async def test_names_that_are_not_keys_are_not_listed_and_cleanup_completes(
        storage: Storage, backend: str, request: pytest.FixtureRequest, database: Database) -> None:
    plant = _planter(backend, request)
    for name in STRAY_NAMES:
        plant(storage, name)
    await storage.put(ORPHAN, b"no row points at me", "image/webp")

    assert [stored.key async for stored in storage.list()] == [ORPHAN]
    report = await find_orphans(database.catalog, storage, apply=True, grace_seconds=0)
    assert (report.files_without_rows, report.deleted) == ([ORPHAN], [ORPHAN])
    assert [stored.key async for stored in storage.list()] == []


class RowCommittedWhileListing:
    """A storage whose listing, once it has yielded every object, lets ``commit`` run: a worker that
    stored a file and commits its row just while cleanup walks the bucket."""

    def __init__(self, inner: Storage, commit: Callable[[], Awaitable[None]]) -> None:
        self.inner = inner
        self.commit = commit

    async def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        return await self.inner.put(key, data, content_type)

    async def get(self, key: str) -> bytes:
        return await self.inner.get(key)

    async def exists(self, key: str) -> bool:
        return await self.inner.exists(key)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    def url(self, key: str) -> str:
        return self.inner.url(key)

    async def list(self, prefix: str = "") -> AsyncIterator[StoredObject]:
        async for stored in self.inner.list(prefix):
            yield stored
        await self.commit()


async def test_a_row_committed_while_storage_is_listed_keeps_its_file(
        tmp_path: Path, settings: Settings, database: Database) -> None:
    """With grace 0 (every orphan goes), the file of a row committed between the listing and the
    reading of the catalogue must stay: the catalogue read after the listing sees the row."""
    await database.queue.enqueue(PostsToEnqueue(read_posts([write_posts(tmp_path / "posts", 1, markers=0)],
                                                           settings)))
    [job] = await database.queue.claim(owner="worker", limit=1, lease_seconds=60)
    inner = MemoryStorage()
    await inner.put(MADE.storage_key, b"a fresh master", "image/webp")  # files are written before rows
    await inner.put(MADE.thumbnail_key, b"its thumbnail", "image/webp")

    async def commit() -> None:
        assert await database.queue.complete(job, MADE)

    report = await find_orphans(database.catalog, RowCommittedWhileListing(inner, commit), apply=True,
                                grace_seconds=0)
    assert (report.files_without_rows, report.deleted) == ([], [])
    assert set(inner.files) == {MADE.storage_key, MADE.thumbnail_key}


MADE = FinishedImage(
    provider="card", model="m", cost_usd=0.0, latency_ms=1, processing_ms=1, width=1, height=1, format="webp",
    bytes_original=1, bytes_stored=1, sha256="0" * 64, storage_key="ab/cd/just-made.webp",
    thumbnail_key="ab/cd/just-made-thumb.webp", alt_text="", revised_prompt=None, lqip="",
    dominant_color="#000000", variants=())
