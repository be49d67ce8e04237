"""Variants for changed settings (new widths or formats), made from the stored masters: no provider call.

For each succeeded image, a page at a time (memory stays bounded however large the library):
the variants today's settings ask for that its rows lack are worked out from the master's size
alone; only then is the master read, checked against its hash, and just those variants encoded
(``make_variants``). Files are stored first; their rows are added after, in one transaction that
is fenced on the image still being succeeded from that same master (db/bulk.py), so a job that
requeued, remade or deleted it meanwhile is never harmed: the files it left become orphans that
``cleanup`` finds. Variants the settings no longer ask for are kept (pages may still use them).
A second run finds nothing lacking and adds nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from blogimg.db.bulk import BulkRows, MadeImage, NewVariant
from blogimg.errors import ImageRejectedError, StorageError
from blogimg.imaging.process import ImagingOptions, largest_variant_width, make_variants
from blogimg.storage.base import Storage

PAGE_SIZE = 100  #: images read per query
CONCURRENCY = 2  #: images worked on at once (each holds one master and its new files in memory)


@dataclass
class RemakeReport:
    """What ``remake_variants`` did."""

    images_seen: int = 0
    images_changed: int = 0  #: images that got at least one new variant row
    variants_added: int = 0
    bytes_added: int = 0
    skipped: dict[int, str] = field(default_factory=dict)  #: image id → why it got nothing
    next_after_id: int | None = None  #: where a run limited by ``max_images`` stopped; None when done


def wanted_variants(width: int, height: int, options: ImagingOptions) -> set[tuple[str, int]]:
    """The (format, width) pairs process_image makes for a ``width``×``height`` image: every
    configured width below the widest variant, and the widest (the master's own width, or less
    when the master is over ``max_variant_pixels``), in every configured format."""
    if width <= 0 or height <= 0:
        return set()
    largest = largest_variant_width(width, height, options.max_variant_pixels)
    widths = {candidate for candidate in options.variant_widths if candidate < largest} | {largest}
    return {(image_format, candidate) for candidate in widths for image_format in options.variant_formats}


async def remake_variants(rows: BulkRows, storage: Storage, options: ImagingOptions, *,
                          after_id: int = 0, max_images: int | None = None, page_size: int = PAGE_SIZE,
                          on_image: Callable[[RemakeReport], None] | None = None) -> RemakeReport:
    """Add the variants the settings ask for that succeeded images lack, from their masters."""
    report = RemakeReport()
    limiter = asyncio.Semaphore(CONCURRENCY)

    async def one(image: MadeImage) -> None:
        async with limiter:
            await _remake_one(rows, storage, options, image, report)
        report.images_seen += 1
        if on_image is not None:
            on_image(report)

    while max_images is None or report.images_seen < max_images:
        take = page_size if max_images is None else min(page_size, max_images - report.images_seen)
        page = await rows.made_after(after_id, take)
        if not page:
            return report
        await asyncio.gather(*(one(image) for image in page))
        after_id = page[-1].image_id
    report.next_after_id = after_id if await rows.made_after(after_id, 1) else None
    return report


async def _remake_one(rows: BulkRows, storage: Storage, options: ImagingOptions, image: MadeImage,
                      report: RemakeReport) -> None:
    lacking = wanted_variants(image.width, image.height, options) - image.variants
    if not lacking:
        return
    try:
        master = await storage.get(image.master_key)
    except StorageError as error:
        report.skipped[image.image_id] = f"its master could not be read: {error}"
        return
    if image.sha256 and hashlib.sha256(master).hexdigest() != image.sha256:
        report.skipped[image.image_id] = "its master does not match its hash (cleanup --remake makes it again)"
        return
    try:
        files = await asyncio.to_thread(make_variants, master, options, lacking)
    except ImageRejectedError as error:
        report.skipped[image.image_id] = str(error)
        return
    del master  # only the new files are held from here on
    try:  # files first, rows after: a crash in between leaves orphan files, never rows without files
        await asyncio.gather(*(storage.put(file.storage_key, file.data, file.content_type) for file in files))
    except StorageError as error:
        report.skipped[image.image_id] = f"could not store its files: {error}"
        return
    added = await rows.add_variants(image.image_id, image.master_key, [
        NewVariant(file.format, file.width, file.height, len(file.data), file.storage_key,
                   quality=file.quality, score=file.score, encoder=file.encoder) for file in files])
    if not added:
        report.skipped[image.image_id] = "it changed while its variants were made (requeued, remade or deleted)"
        return
    report.images_changed += 1
    report.variants_added += added
    report.bytes_added += sum(len(file.data) for file in files)
