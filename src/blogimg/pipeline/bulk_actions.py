"""Bulk actions: retry the failed images of a batch or a post, delete a post's images, prune old events.

Retries go through the queue's own retry path (``FailedToRetry``: one new batch, the same locks
and events as ``blogimg retry``); deletes through the catalogue's, one image at a time, in the
order ``DELETE /api/images/{id}`` uses: the rows first, then the files no other row names — a
crash in between leaves orphan files for ``cleanup``, never a row that points at a missing file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from blogimg.db.bulk import BulkRows
from blogimg.db.database import Database
from blogimg.db.tables import utcnow
from blogimg.domain import Status
from blogimg.errors import InputError
from blogimg.storage.base import Storage


@dataclass
class DeleteReport:
    """What ``delete_post_images`` did."""

    deleted: list[int] = field(default_factory=list)  #: images whose rows are gone
    files_deleted: list[str] = field(default_factory=list)
    running: list[int] = field(default_factory=list)  #: left alone: a worker holds them now


async def failed_images(database: Database, *, batch_id: int | None = None, post_id: int | None = None) -> list[int]:
    """The failed images of one batch or one post (exactly one of the two); NotFoundError for neither."""
    if (batch_id is None) == (post_id is None):
        raise InputError("name one batch or one post")
    rows = BulkRows(database.engine, database.sessions)
    if batch_id is not None:
        return await rows.failed_of_batch(batch_id)
    assert post_id is not None
    return sorted(await rows.images_of_post(post_id, Status.FAILED))


async def delete_post_images(database: Database, storage: Storage, post_id: int) -> DeleteReport:
    """Delete every image of a post that no worker is making now: rows, then their unshared files.

    The post and its prompts stay (``generate`` can make the images again); a running image is
    left to its worker, whose completion would otherwise spend a call on a row that is gone.
    """
    report = DeleteReport()
    images = await BulkRows(database.engine, database.sessions).images_of_post(post_id)
    for image_id, status in images.items():
        if status == Status.RUNNING:
            report.running.append(image_id)
            continue
        keys = await database.catalog.delete_image(image_id)
        if keys is None:
            continue  # deleted by someone else meanwhile
        report.deleted.append(image_id)
        for key in keys:  # after the rows: see the module's docstring
            await storage.delete(key)
        report.files_deleted += keys
    return report


async def prune_events(database: Database, retention_days: float) -> int:
    """Delete status events older than ``retention_days`` (the newest one always stays), and the
    webhook deliveries made as long ago that are delivered or failed (pending ones are still to be
    sent); how many rows went."""
    if retention_days <= 0:
        raise InputError("the retention must be more than 0 days")
    before = utcnow() - timedelta(days=retention_days)
    events = await BulkRows(database.engine, database.sessions).prune_events(before)
    return events + await database.webhooks.prune(before)


def describe_ids(ids: Sequence[int], most: int = 20) -> str:
    """``ids 1, 2, 3`` (the first ``most`` of them, then ``…``), for one-line messages."""
    shown = ", ".join(map(str, ids[:most]))
    return f"ids {shown}{', …' if len(ids) > most else ''}"
