"""Bulk actions: retry the failed images of a batch or a post, delete a post's images, re-make
variants for changed settings from the stored masters, prune old status events.

Every route here changes something: a read-only key gets 403 (api/auth.py).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field, model_validator

from blogimg.api.deps import DatabaseDep, RuntimeDep
from blogimg.api.errors import ApiError, errors
from blogimg.api.routes.failures import RETRY_LIMIT
from blogimg.api.schemas import GenerateResponse, Strict
from blogimg.db.bulk import BulkRows
from blogimg.db.jobs import FailedToRetry
from blogimg.imaging.process import ImagingOptions
from blogimg.pipeline.batches import run_batch
from blogimg.pipeline.bulk_actions import delete_post_images, failed_images, prune_events
from blogimg.pipeline.remake_variants import remake_variants

router = APIRouter(tags=["bulk"])
_ID = Field(None, ge=1, le=2**31 - 1)


class RetryOf(Strict):
    """Exactly one of the two."""

    batch_id: int | None = _ID
    post_id: int | None = _ID

    @model_validator(mode="after")
    def _one(self) -> RetryOf:
        if (self.batch_id is None) == (self.post_id is None):
            raise ValueError("give batch_id or post_id (one of them)")
        return self


class DeletedOut(BaseModel):
    deleted: list[int] = Field(description="Images whose rows (and ledger rows) are gone")
    files_deleted: list[str] = Field(description="Files no other image shared, deleted after the rows")
    running: list[int] = Field(description="Left alone: a worker is making them now; try again when it is done")


class RemadeOut(BaseModel):
    images_seen: int
    images_changed: int
    variants_added: int
    bytes_added: int
    skipped: dict[int, str] = Field(description="image id → why it got nothing")
    next_after_id: int | None = Field(description="Pass as after_id for the next images; null when done")


class PrunedOut(BaseModel):
    deleted: int
    retention_days: float


@router.post("/api/bulk/retry", status_code=202, response_model=GenerateResponse,
             responses=errors(401, 403, 404, 409, 413, 422))
async def retry(body: RetryOf, database: DatabaseDep) -> GenerateResponse:
    """Queue again every failed image of a batch or a post, as one new batch (202)."""
    image_ids = await failed_images(database, batch_id=body.batch_id, post_id=body.post_id)
    if len(image_ids) > RETRY_LIMIT:
        raise ApiError(422, "validation", f"{len(image_ids)} failed images: more than {RETRY_LIMIT} at once; "
                                          "use POST /api/images/retry with a narrower filter")
    if not image_ids:
        raise ApiError(409, "conflict", "no failed image to retry there")
    summary = await run_batch(database, FailedToRetry(image_ids=image_ids))
    assert summary.batch_id is not None
    return GenerateResponse(batch_id=summary.batch_id, image_ids=list(summary.image_ids))


@router.delete("/api/posts/{post_id}/images", response_model=DeletedOut, responses=errors(401, 403, 404, 422))
async def delete_images(post_id: Annotated[int, Path(ge=1, le=2**31 - 1)], runtime: RuntimeDep) -> DeletedOut:
    """Delete a post's images (rows, then the files no other image shares); the post stays."""
    report = await delete_post_images(runtime.database, runtime.storage, post_id)
    return DeletedOut(deleted=report.deleted, files_deleted=report.files_deleted, running=report.running)


@router.post("/api/bulk/remake-variants", response_model=RemadeOut, responses=errors(401, 403, 422))
async def remake(runtime: RuntimeDep,
                 after_id: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
                 limit: Annotated[int, Query(ge=1, le=1000, description="Images looked at in this call")] = 100,
                 ) -> RemadeOut:
    """Add the variants today's settings ask for that succeeded images lack, from their stored
    masters (no provider call); a page of ``limit`` images per call, from ``after_id``."""
    database = runtime.database
    report = await remake_variants(BulkRows(database.engine, database.sessions), runtime.storage,
                                   ImagingOptions.from_settings(runtime.settings), after_id=after_id, max_images=limit)
    return RemadeOut(images_seen=report.images_seen, images_changed=report.images_changed,
                     variants_added=report.variants_added, bytes_added=report.bytes_added, skipped=report.skipped,
                     next_after_id=report.next_after_id)


@router.post("/api/bulk/prune-events", response_model=PrunedOut, responses=errors(401, 403, 422))
async def prune(runtime: RuntimeDep,
                days: Annotated[float | None, Query(gt=0, le=36_500, description="Default: the setting "
                                                                                "EVENT_RETENTION_DAYS")] = None,
                ) -> PrunedOut:
    """Delete image status events older than the retention (the newest event always stays)."""
    retention = days if days is not None else runtime.settings.event_retention_days
    return PrunedOut(deleted=await prune_events(runtime.database, retention), retention_days=retention)
