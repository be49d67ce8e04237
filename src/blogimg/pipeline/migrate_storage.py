"""Copy a whole library from one storage backend to another, verified object by object.

Only what the catalogue refers to is copied: every image's master, thumbnail and variants (orphan
objects in the source stay behind; ``blogimg cleanup`` reports them). Each copy is read back from
the destination and its SHA-256 compared with the source bytes. A key the destination already holds
with the same checksum is skipped, so a run that was interrupted (Ctrl-C, a killed process, a lost
network) is finished by running it again. Keys are content-addressed and the same on both sides.

Nothing is switched here: URLs are not stored (they follow from keys and the configured backend
when read, see db/tables.py), so the library moves when the user changes the storage settings,
which the command tells them to do only once every object is verified.

Memory stays bounded: the catalogue is read a page of images at a time, and at most
``concurrency`` objects (each held twice: the source bytes and the read-back) are in memory at once.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from blogimg.db.catalog import Catalog, ImageFiles
from blogimg.errors import StorageError, StorageFullError
from blogimg.storage.base import Storage

PAGE_SIZE = 200  #: images read from the catalogue at a time
DEFAULT_CONCURRENCY = 4

#: Content types by extension, for backends that serve files with the type they were stored with.
CONTENT_TYPES = {"avif": "image/avif", "webp": "image/webp", "jpg": "image/jpeg", "jpeg": "image/jpeg",
                 "png": "image/png", "gif": "image/gif", "svg": "image/svg+xml"}


@dataclass(frozen=True, slots=True)
class CopyFailure:
    """One object that is not (verified) in the destination, and why."""

    image_id: int
    key: str
    reason: str


@dataclass
class MigrationReport:
    """What a run did; ``ok`` only when every object the catalogue refers to is verified there."""

    images: int = 0  #: images whose objects were looked at
    copied: int = 0  #: objects written to the destination and verified by reading them back
    already_there: int = 0  #: objects the destination held already with the same checksum
    bytes_copied: int = 0
    failures: list[CopyFailure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def verified(self) -> int:
        return self.copied + self.already_there


def content_type(key: str) -> str:
    return CONTENT_TYPES.get(key.rpartition(".")[2].lower(), "application/octet-stream")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def migrate_storage(catalog: Catalog, source: Storage, destination: Storage, *,
                          concurrency: int = DEFAULT_CONCURRENCY, page_size: int = PAGE_SIZE,
                          on_image: Callable[[MigrationReport], None] | None = None) -> MigrationReport:
    """Copy every object the catalogue refers to from ``source`` to ``destination`` and verify it.

    ``on_image`` is called after each image's objects are done (for a progress bar). Per-object
    problems (a missing source object, a failed write, a read-back that differs) are collected in
    the report; a full destination disk stops the run (every later write would fail too), and any
    other exception propagates — a re-run resumes where it stopped.
    """
    report = MigrationReport()
    slots = asyncio.Semaphore(concurrency)
    after = 0
    while page := await catalog.image_files_after(after, page_size):
        await _copy_page(page, source, destination, slots, report, on_image)
        after = page[-1].image_id
    report.failures.sort(key=lambda failure: (failure.image_id, failure.key))
    return report


async def _copy_page(page: list[ImageFiles], source: Storage, destination: Storage, slots: asyncio.Semaphore,
                     report: MigrationReport, on_image: Callable[[MigrationReport], None] | None) -> None:
    claimed: set[str] = set()  # two images with identical bytes share a key: copy it once

    async def one_image(image: ImageFiles) -> None:
        keys = sorted(image.keys() - claimed)
        claimed.update(keys)
        await _together([_copy(image.image_id, key, source, destination, slots, report) for key in keys])
        report.images += 1
        if on_image is not None:
            on_image(report)

    await _together([one_image(image) for image in page])


async def _together(work: list[Coroutine[Any, Any, None]]) -> None:
    """Run ``work`` concurrently; when one raises (or Ctrl-C comes), cancel the rest and wait for
    them, so no copy goes on behind the caller's back, and raise that exception as it is."""
    tasks = [asyncio.ensure_future(coroutine) for coroutine in work]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _copy(image_id: int, key: str, source: Storage, destination: Storage,
                slots: asyncio.Semaphore, report: MigrationReport) -> None:
    async with slots:
        try:
            data = await source.get(key)
        except StorageError as error:
            reason = "missing from the source" if not await _exists(source, key) else f"cannot read it: {error}"
            report.failures.append(CopyFailure(image_id, key, reason))
            return
        digest = _digest(data)
        if await _holds(destination, key, digest):
            report.already_there += 1
            return
        try:
            await destination.put(key, data, content_type(key))
            written = await destination.get(key)
        except StorageFullError:
            raise
        except StorageError as error:
            report.failures.append(CopyFailure(image_id, key, f"cannot copy it: {error}"))
            return
        if _digest(written) != digest:
            report.failures.append(CopyFailure(image_id, key, "the copy read back differs from the source"))
            return
        report.copied += 1
        report.bytes_copied += len(data)


async def _holds(storage: Storage, key: str, digest: str) -> bool:
    """Whether ``storage`` holds ``key`` with exactly these bytes (a copy from an earlier run)."""
    try:
        return _digest(await storage.get(key)) == digest
    except StorageError:
        return False


async def _exists(storage: Storage, key: str) -> bool:
    try:
        return await storage.exists(key)
    except StorageError:
        return True  # cannot tell: say it could not be read, not that it is gone
