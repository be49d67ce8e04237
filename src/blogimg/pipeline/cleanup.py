"""Orphans both ways: files no row points at, and rows whose files are gone — and the way back.

A dry run unless asked to apply; applying deletes only orphan *files*, and only those older
than a grace period — a young file may belong to a job that stored it and has not yet
committed its row (files are written before rows). A file whose backend gives no modification
time is kept unless the grace period is 0. Everything goes through the Storage protocol, so it
works alike on every backend. Rows with missing files are reported, and
with ``repair`` the images whose master is still stored get their missing files made again
from it (pipeline/repair.py). Images whose master is gone too are listed: making them again
calls a provider, a decision for a person (``blogimg cleanup --remake``). A provider's C2PA
original that is gone is listed on its own: nothing can make it again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from blogimg.db.catalog import Catalog
from blogimg.imaging.process import ImagingOptions
from blogimg.pipeline.repair import (
    RepairReport,
    master_lost,
    needs_files,
    original_lost,
    repair_from_masters,
)
from blogimg.storage.base import Storage


@dataclass
class CleanupReport:
    applied: bool
    grace_seconds: float
    files_without_rows: list[str] = field(default_factory=list)
    rows_missing_files: list[int] = field(default_factory=list)  #: as found, before any repair
    deleted: list[str] = field(default_factory=list)
    kept_undated: list[str] = field(default_factory=list)  #: orphans the backend gives no age for: kept
    repairable: list[int] = field(default_factory=list)  #: succeeded, files missing, master still stored
    masters_missing: list[int] = field(default_factory=list)  #: succeeded, master gone too: remake only
    originals_missing: list[int] = field(default_factory=list)  #: C2PA original gone: cannot be made again
    repair: RepairReport | None = None  #: what ``repair`` did, when asked


async def find_orphans(catalog: Catalog, storage: Storage, *, apply: bool = False,
                       grace_seconds: float = 3600.0, repair: bool = False,
                       imaging: ImagingOptions | None = None) -> CleanupReport:
    """Report orphans both ways; ``repair`` re-makes missing files from masters, ``apply`` deletes
    orphan files older than ``grace_seconds``. ``imaging`` must be the settings the images were
    made with (``ImagingOptions.from_settings``) for repaired files to keep their keys."""
    # Storage first, the catalogue second: files are written before rows, so a row committed
    # while the listing runs is seen, and its file is not taken for an orphan.
    stored = [item async for item in storage.list()]
    images = await catalog.image_files()
    stored_keys = {item.key for item in stored}
    missing = needs_files(images, stored_keys)
    report = CleanupReport(
        applied=apply, grace_seconds=grace_seconds,
        rows_missing_files=sorted({image.image_id for image in images if image.keys() - stored_keys}),
        repairable=[image.image_id for image in missing if not master_lost(image, stored_keys)],
        masters_missing=[image.image_id for image in missing if master_lost(image, stored_keys)],
        originals_missing=[image.image_id for image in images if original_lost(image, stored_keys)],
    )
    if repair and missing:
        report.repair = await repair_from_masters(catalog, storage, missing, stored_keys,
                                                  imaging or ImagingOptions())
        report.masters_missing = sorted(report.repair.masters_missing)
        if report.repair.files:  # rows may name new keys now, and new files exist: read both again
            stored = [item async for item in storage.list()]
            images = await catalog.image_files()
    referenced = set().union(*(image.keys() for image in images))
    orphans = [item for item in stored if item.key not in referenced]
    report.files_without_rows = sorted(item.key for item in orphans)
    if apply:
        cutoff = time.time() - grace_seconds
        for item in orphans:
            # An object whose age the backend does not tell cannot be proved old enough: it stays,
            # unless there is no grace at all. 0 means "whatever is orphaned now", so it must not
            # hinge on times either: a storage server whose clock runs ahead of ours would make a
            # fresh orphan look younger than now.
            if grace_seconds <= 0 or (item.modified is not None and item.modified < cutoff):
                await storage.delete(item.key)
                report.deleted.append(item.key)
            elif item.modified is None:
                report.kept_undated.append(item.key)
        report.deleted.sort()
    return report
