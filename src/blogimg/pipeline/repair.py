"""The way back for images whose files are missing: from the stored master, or from a provider.

A succeeded image whose variant or thumbnail files are gone but whose master is still stored is
*repaired*: its missing files are made again from the master by the imaging code, with the same
settings, and stored before any row changes. From a lossless (PNG) master the files come out
byte-identical, so their content-addressed keys are the ones the rows already hold and no row
changes; from a lossy (JPEG) master they differ a little, and the image's rows are pointed at
the new keys in one transaction, fenced on the keys they held.

An image whose master is gone too (or no longer matches its hash) can only be *remade*: queued
again through the queue and made by a provider, which costs money — so only when asked
(``blogimg cleanup --remake``).

A provider's C2PA original (pipeline/provenance.py) is the one file nothing can make again: its
manifest signs the provider's exact bytes. Repair never counts it as something to make; a missing
one is reported apart (``original_lost``).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from blogimg.db.catalog import Catalog, ImageFiles, RemadeFile
from blogimg.db.jobs import LostToRemake
from blogimg.domain import ProgressEvent, RunSummary, Status
from blogimg.errors import ImageRejectedError, StorageError
from blogimg.imaging.process import EncodedFile, ImagingOptions, process_image
from blogimg.pipeline.batches import run_batch
from blogimg.pipeline.runtime import Runtime
from blogimg.storage.base import Storage

EventCallback = Callable[[ProgressEvent], None]
REMAKE_COMMAND = "blogimg cleanup --remake"


@dataclass
class RepairReport:
    """What ``repair_from_masters`` did."""

    repaired: list[int] = field(default_factory=list)  #: images whose missing files were made again
    files: list[str] = field(default_factory=list)  #: the keys written
    rekeyed: list[int] = field(default_factory=list)  #: repaired images whose rows now name new keys
    masters_missing: list[int] = field(default_factory=list)  #: only a provider can make these again
    not_repaired: dict[int, str] = field(default_factory=dict)  #: image id → why not


def makeable_keys(image: ImageFiles) -> set[str]:
    """The keys of ``image``'s files that can be made again: all but a kept provider original."""
    return image.keys() - {image.original_key} if image.original_key else image.keys()


def needs_files(images: Iterable[ImageFiles], stored: set[str]) -> list[ImageFiles]:
    """The succeeded images with at least one file that can be made again missing from ``stored``."""
    return [image for image in images if image.status == Status.SUCCEEDED and makeable_keys(image) - stored]


def original_lost(image: ImageFiles, stored: set[str]) -> bool:
    """Whether ``image`` kept a provider's C2PA original that ``stored`` lacks: no one can make it again."""
    return image.original_key is not None and image.original_key not in stored


def master_lost(image: ImageFiles, stored: set[str]) -> bool:
    return image.master_key is None or image.master_key not in stored


async def repair_from_masters(catalog: Catalog, storage: Storage, images: Sequence[ImageFiles],
                              stored: set[str], imaging: ImagingOptions) -> RepairReport:
    """Make the missing files of ``images`` again from their stored masters (see the module)."""
    report = RepairReport()
    for image in needs_files(images, stored):
        if master_lost(image, stored):
            report.masters_missing.append(image.image_id)
            continue
        await _repair_one(catalog, storage, image, stored, imaging, report)
    report.files.sort()
    return report


async def _repair_one(catalog: Catalog, storage: Storage, image: ImageFiles, stored: set[str],
                      imaging: ImagingOptions, report: RepairReport) -> None:
    assert image.master_key is not None
    try:
        master = await storage.get(image.master_key)
    except StorageError:
        report.masters_missing.append(image.image_id)  # gone since it was listed
        return
    if image.sha256 and hashlib.sha256(master).hexdigest() != image.sha256:
        report.masters_missing.append(image.image_id)  # damaged: variants made from it would be too
        return
    try:
        processed = await asyncio.to_thread(process_image, master, imaging)
    except ImageRejectedError as error:
        report.not_repaired[image.image_id] = f"its master could not be read: {error}"
        return
    made = {(file.format, file.width): file for file in processed.variants}
    wanted: list[tuple[str, EncodedFile]] = []  #: (the key the row holds, the file made again)
    if image.thumbnail_key and image.thumbnail_key not in stored:
        wanted.append((image.thumbnail_key, processed.thumbnail))
    for (image_format, width), key in sorted(image.variants.items()):
        if key in stored:
            continue
        file = made.get((image_format, width))
        if file is None:
            report.not_repaired[image.image_id] = (
                f"the settings no longer make a {width} px {image_format} variant; remake it with {REMAKE_COMMAND}")
            return
        wanted.append((key, file))
    try:  # files first, rows after: a crash in between leaves orphan files, never rows without files
        await asyncio.gather(*(storage.put(file.storage_key, file.data, file.content_type) for _, file in wanted))
    except StorageError as error:
        report.not_repaired[image.image_id] = f"could not store its files: {error}"
        return
    thumbnail: RemadeFile | None = None
    variants: list[RemadeFile] = []
    for old, file in wanted:
        if file.storage_key != old:  # a lossy master: the same settings, slightly different bytes
            remade = RemadeFile(file.format, file.width, file.height, len(file.data), old, file.storage_key,
                                quality=file.quality, score=file.score, encoder=file.encoder)
            if file is processed.thumbnail:
                thumbnail = remade
            else:
                variants.append(remade)
    changed = thumbnail is not None or bool(variants)
    if changed and not await catalog.replace_file_keys(image.image_id, thumbnail=thumbnail, variants=variants):
        report.not_repaired[image.image_id] = "its rows changed while it was repaired; run cleanup again"
        return
    report.repaired.append(image.image_id)
    report.files.extend(file.storage_key for _, file in wanted)
    if changed:
        report.rekeyed.append(image.image_id)


async def remake_lost(runtime: Runtime, image_ids: Sequence[int], *,
                      on_event: EventCallback | None = None) -> RunSummary:
    """Queue again the succeeded images among ``image_ids`` whose master is still missing, and make
    them now with an embedded worker (as ``retry`` does). Each one calls a provider again."""
    return await run_batch(runtime.database, LostToRemake(await _lost_masters(runtime, image_ids)),
                           worker=runtime.worker(on_event=on_event), on_event=on_event)


async def _lost_masters(runtime: Runtime, image_ids: Sequence[int]) -> dict[int, str]:
    """Image id → master key, for the succeeded images among these whose master storage lacks."""
    images = await runtime.database.catalog.image_files(image_ids)
    return {image.image_id: image.master_key for image in images
            if image.status == Status.SUCCEEDED and image.master_key
            and not await runtime.storage.exists(image.master_key)}


async def missing_files(storage: Storage, image: ImageFiles) -> list[str]:
    """The keys one image's rows name that storage does not hold (one existence check per file)."""
    keys = sorted(image.keys())
    found = await asyncio.gather(*(storage.exists(key) for key in keys))
    return [key for key, present in zip(keys, found, strict=True) if not present]


@dataclass(frozen=True, slots=True)
class ImageRepair:
    """What ``repair_image`` found and did for one image."""

    missing: list[str]  #: the keys that were missing when it looked
    report: RepairReport | None  #: the repair from the master, when there was one to make
    remade: RunSummary | None  #: the batch that queued it for a provider, when its master was gone


async def repair_image(runtime: Runtime, image: ImageFiles, imaging: ImagingOptions, *,
                       remake: bool) -> ImageRepair:
    """Make one succeeded image whole again: its missing files from its master when that is stored
    (free), else — only when ``remake`` — queue it for a provider (the serving worker makes it)."""
    missing = await missing_files(runtime.storage, image)
    if not missing:
        return ImageRepair(missing, None, None)
    stored = image.keys() - set(missing)
    if not master_lost(image, stored):
        report = await repair_from_masters(runtime.database.catalog, runtime.storage, [image], stored, imaging)
        if image.image_id not in report.masters_missing:  # the master may prove damaged when read
            return ImageRepair(missing, report, None)
    if not remake or image.master_key is None:
        return ImageRepair(missing, None, None)
    return ImageRepair(missing, None, await remake_queued(runtime, [image.image_id]))


async def remake_queued(runtime: Runtime, image_ids: Sequence[int]) -> RunSummary:
    """Queue the succeeded images among ``image_ids`` whose master is still missing, for whichever
    worker serves the queue (the API's own, or ``blogimg worker``); nothing is made here."""
    return await run_batch(runtime.database, LostToRemake(await _lost_masters(runtime, image_ids)))
