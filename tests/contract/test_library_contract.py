"""A library on every storage backend: real images made by the pipeline (the offline ``card``
provider) into the backend under test, then deleted, cleaned up and moved the way users do it —
through the REST API and ``migrate_storage``. tests/contract/conftest.py gives each backend in turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2 as httpx
import pytest

from blogimg.api.app import create_app
from blogimg.config import Settings
from blogimg.db.catalog import ImageFiles
from blogimg.db.database import Database
from blogimg.pipeline.cleanup import find_orphans
from blogimg.pipeline.generate import generate
from blogimg.pipeline.migrate_storage import migrate_storage
from blogimg.storage import MemoryStorage, Storage
from tests.support import write_posts

ORPHAN = "zz/yy/orphan.webp"


@pytest.fixture
def small(settings: Settings) -> Settings:
    """Two small images a library: a cover and one inline picture, one variant width."""
    return settings.model_copy(update={"cover_size": "320x200", "inline_size": "200x200", "variant_widths": [96]})


async def make_library(posts: Path, settings: Settings, storage: Storage) -> list[ImageFiles]:
    summary = await generate([write_posts(posts, 1, markers=1)], settings, providers=["card"], storage=storage)
    assert summary.succeeded == 2, summary.failures
    database = await Database.open(settings.database_url)
    try:
        return await database.catalog.image_files()
    finally:
        await database.close()


@asynccontextmanager
async def api(settings: Settings, storage: Storage) -> AsyncIterator[httpx.AsyncClient]:
    """The REST API over ``storage``, in this event loop (a backend's client may be bound to it)."""
    app = create_app(settings, storage=storage)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://blogimg.test") as client:
        yield client


async def listed(storage: Storage) -> set[str]:
    return {stored.key async for stored in storage.list()}


async def test_deleting_an_image_removes_every_one_of_its_objects(
        tmp_path: Path, small: Settings, storage: Storage) -> None:
    gone, kept = await make_library(tmp_path / "posts", small, storage)
    assert gone.keys() and kept.keys() and len(gone.keys()) >= 3  # master, thumbnail, variants
    assert gone.keys() | kept.keys() <= await listed(storage)

    async with api(small, storage) as client:
        response = await client.delete(f"/api/images/{gone.image_id}")
        assert response.status_code == 204, response.text
        assert (await client.get(f"/api/images/{gone.image_id}")).status_code == 404

    left = await listed(storage)
    assert not (gone.keys() - kept.keys()) & left  # every object of its own is gone …
    assert kept.keys() <= left  # … and the other image is whole
    for key in gone.keys() - kept.keys():
        assert not await storage.exists(key)


async def test_an_orphan_is_reported_then_deleted_only_with_apply_past_the_grace_period(
        tmp_path: Path, small: Settings, storage: Storage) -> None:
    images = await make_library(tmp_path / "posts", small, storage)
    referenced = set().union(*(image.keys() for image in images))
    await storage.put(ORPHAN, b"no row points at me", "image/webp")

    async with api(small, storage) as client:
        async def cleanup(**parameters: str) -> dict[str, object]:
            response = await client.post("/api/images/cleanup", params=parameters)
            assert response.status_code == 200, response.text
            assert referenced <= await listed(storage)  # nothing the catalogue refers to is ever deleted
            report: dict[str, object] = response.json()
            return report

        report = await cleanup()
        assert (report["files_without_rows"], report["deleted"], report["rows_missing_files"]) == ([ORPHAN], [], [])
        assert ORPHAN in await listed(storage)  # a dry run deletes nothing

        report = await cleanup(apply="true")  # the default grace period: an hour
        assert (report["files_without_rows"], report["deleted"]) == ([ORPHAN], [])
        assert await storage.exists(ORPHAN)  # too young

        report = await cleanup(apply="true", grace_seconds="0")
        assert (report["files_without_rows"], report["deleted"]) == ([ORPHAN], [ORPHAN])
        assert not await storage.exists(ORPHAN)
        report = await cleanup(apply="true", grace_seconds="0")
        assert (report["files_without_rows"], report["deleted"]) == ([], [])
    assert await listed(storage) == referenced


async def test_an_orphan_past_a_short_grace_period_goes_unless_its_age_is_unknown(
        tmp_path: Path, small: Settings, storage: Storage) -> None:
    """A backend that gives no modification time cannot prove an object old: it is kept (and said
    so) unless the grace period is 0; one that gives times deletes it once it is old enough."""
    images = await make_library(tmp_path / "posts", small, storage)
    referenced = set().union(*(image.keys() for image in images))
    await storage.put(ORPHAN, b"no row points at me", "image/webp")
    dated = {stored.key: stored.modified async for stored in storage.list()}[ORPHAN] is not None
    await asyncio.sleep(1.2)
    database = await Database.open(small.database_url)
    try:
        report = await find_orphans(database.catalog, storage, apply=True, grace_seconds=1.0)
    finally:
        await database.close()
    assert report.deleted == ([ORPHAN] if dated else [])
    assert report.kept_undated == ([] if dated else [ORPHAN])
    assert await listed(storage) == referenced | (set() if dated else {ORPHAN})


async def test_a_library_moves_to_this_backend_verified(tmp_path: Path, small: Settings, storage: Storage) -> None:
    source = MemoryStorage()
    images = await make_library(tmp_path / "posts", small, source)
    referenced = set().union(*(image.keys() for image in images))
    await source.put(ORPHAN, b"left behind", "image/webp")
    database = await Database.open(small.database_url)
    try:
        report = await migrate_storage(database.catalog, source, storage, concurrency=3)
        assert report.ok, report.failures
        assert report.copied == len(referenced)
        assert await listed(storage) == referenced  # only what the catalogue refers to
        for key in referenced:
            assert await storage.get(key) == source.files[key]
        again = await migrate_storage(database.catalog, source, storage)
        assert (again.copied, again.already_there, again.failures) == (0, len(referenced), [])
    finally:
        await database.close()
