"""Orphans both ways: files no row points at, and rows whose files are gone.

A dry run unless asked to apply; applying deletes only orphan *files*, and only those older
than a grace period — a young file may belong to a job that stored it and has not yet
committed its row (files are written before rows). Rows with missing files are reported, not
touched: re-queueing them is a decision for a person (``blogimg retry``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from blogimg.db.catalog import Catalog
from blogimg.storage.base import Storage


@dataclass
class CleanupReport:
    applied: bool
    grace_seconds: float
    files_without_rows: list[str] = field(default_factory=list)
    rows_missing_files: list[int] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


async def find_orphans(catalog: Catalog, storage: Storage, *, apply: bool = False,
                       grace_seconds: float = 3600.0) -> CleanupReport:
    referenced = await catalog.referenced_keys()
    stored = [item async for item in storage.list()]
    stored_keys = {item.key for item in stored}
    report = CleanupReport(
        applied=apply, grace_seconds=grace_seconds,
        files_without_rows=sorted(item.key for item in stored if item.key not in referenced),
        rows_missing_files=sorted({image_id for key, image_id in referenced.items() if key not in stored_keys}),
    )
    if apply:
        cutoff = time.time() - grace_seconds
        for item in stored:
            if item.key not in referenced and item.modified is not None and item.modified < cutoff:
                await storage.delete(item.key)
                report.deleted.append(item.key)
        report.deleted.sort()
    return report
