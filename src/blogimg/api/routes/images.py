"""/api/images: generate, read, search, stats, edit, delete, retry, cleanup."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response

from blogimg.api.deps import CatalogDep, DatabaseDep, ReportingDep, RuntimeDep, StateDep
from blogimg.api.errors import MUTATING, ApiError, errors
from blogimg.api.routes.common import image_out, naive_utc, utc
from blogimg.api.schemas import (
    NO_NUL,
    AttemptList,
    AttemptOut,
    CleanupOut,
    GenerateRequest,
    GenerateResponse,
    ImageList,
    ImageOut,
    ImageUpdate,
    RepairOut,
    StatsOut,
    StatsRow,
)
from blogimg.db.catalog import ImageEdit, ImageWithVariants
from blogimg.db.jobs import PromptsToEnqueue
from blogimg.db.posts import PromptSpec
from blogimg.domain import PromptKind, Size, Status
from blogimg.errors import NotFoundError
from blogimg.imaging.process import ImagingOptions
from blogimg.pipeline.batches import run_batch
from blogimg.pipeline.cleanup import find_orphans
from blogimg.pipeline.refocus import refocus_thumbnail
from blogimg.pipeline.repair import missing_files, remake_queued, repair_image
from blogimg.storage.base import Storage

router = APIRouter(prefix="/api/images", tags=["images"])


@router.post("/generate", status_code=202, response_model=GenerateResponse,
             responses=errors(401, 404, 413, 422))
async def generate(body: GenerateRequest, runtime: RuntimeDep, state: StateDep,
                   idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None) -> GenerateResponse:
    """Queue images for a post's prompts and/or explicit prompts; 202 with the batch."""
    if body.blog_post_id is None and not body.prompts:
        raise ApiError(422, "validation", "give blog_post_id, prompts, or both")
    options = body.options
    unknown = sorted(set(options.providers or []) - state.provider_names) if options else []
    if unknown:
        raise ApiError(422, "validation", f"unknown providers: {', '.join(unknown)}")
    default_size = (options.size if options else None) or runtime.settings.inline_size
    specs = [PromptSpec(p.prompt, PromptKind(p.kind), Size.parse(p.size or default_size)) for p in body.prompts or []]
    job_options = {key: value for key, value in {
        "providers": options.providers if options else None, "quality": options.quality if options else None,
    }.items() if value} or None
    request_hash = hashlib.sha256(json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()
    summary = await run_batch(runtime.database, PromptsToEnqueue(
        post_id=body.blog_post_id, prompts=specs, variations=options.variations if options else 1,
        options=job_options, idempotency_key=idempotency_key, request_hash=request_hash))
    assert summary.batch_id is not None
    return GenerateResponse(batch_id=summary.batch_id, image_ids=list(summary.image_ids))


@router.get("/stats", response_model=StatsOut)
async def stats(reporting: ReportingDep) -> StatsOut:
    """By provider, model, status and day: counts, success rate, p50/p95 latency, cost, bytes."""
    return StatsOut(items=[StatsRow(**dataclasses.asdict(row)) for row in await reporting.daily()])


@router.get("/search", response_model=ImageList, responses=errors(422))
async def search(
    catalog: CatalogDep, runtime: RuntimeDep,
    q: Annotated[str | None, Query(max_length=200, pattern=NO_NUL, description="Text in the prompt or alt text")] = None,
    provider: Annotated[str | None, Query(max_length=100, pattern=NO_NUL)] = None,
    status: Status | None = None,
    post_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    cursor: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> ImageList:
    """Newest first; pass ``next_cursor`` back as ``cursor`` for the next page."""
    page = await catalog.search(text=q, provider=provider, status=status, post_id=post_id,
                                created_from=naive_utc(created_from), created_to=naive_utc(created_to),
                                cursor=cursor, limit=limit)
    return ImageList(items=[image_out(item, runtime.storage) for item in page.items], next_cursor=page.next_cursor)


@router.post("/cleanup", response_model=CleanupOut, responses=MUTATING)
async def cleanup(
    runtime: RuntimeDep, catalog: CatalogDep,
    apply: bool = False,
    grace_seconds: Annotated[float, Query(ge=0, le=10 * 365 * 86400)] = 3600.0,
    repair: Annotated[bool, Query(description="Make missing files again from stored masters")] = False,
    remake: Annotated[bool, Query(description="Queue images whose master is gone for a provider (costs "
                                              "money; implies repair)")] = False,
) -> CleanupOut:
    """Orphans both ways. A dry run unless ``apply``; then only files older than the grace period go."""
    report = await find_orphans(catalog, runtime.storage, apply=apply, grace_seconds=grace_seconds,
                                repair=repair or remake, imaging=ImagingOptions.from_settings(runtime.settings))
    remade = await remake_queued(runtime, report.masters_missing) if remake and report.masters_missing else None
    return CleanupOut(applied=report.applied, grace_seconds=report.grace_seconds,
                      files_without_rows=report.files_without_rows, rows_missing_files=report.rows_missing_files,
                      deleted=report.deleted, kept_undated=report.kept_undated, repairable=report.repairable, masters_missing=report.masters_missing,
                      originals_missing=report.originals_missing,
                      repaired=report.repair.repaired if report.repair else [],
                      remade_batch_id=remade.batch_id if remade else None)


@router.get("/blog/{post_id}", response_model=ImageList, responses=errors(404, 422))
async def for_post(post_id: int, catalog: CatalogDep, runtime: RuntimeDep) -> ImageList:
    """Every image of one post."""
    return _image_list(None if _too_big(post_id) else await catalog.images_of_post(post_id),
                       runtime.storage, f"no post with id {post_id}")


@router.get("/prompt/{prompt_id}", response_model=ImageList, responses=errors(404, 422))
async def for_prompt(prompt_id: int, catalog: CatalogDep, runtime: RuntimeDep) -> ImageList:
    """Every image (variation) of one prompt."""
    return _image_list(None if _too_big(prompt_id) else await catalog.images_of_prompt(prompt_id),
                       runtime.storage, f"no prompt with id {prompt_id}")


def _image_list(items: list[ImageWithVariants] | None, storage: Storage, missing: str) -> ImageList:
    if items is None:
        raise NotFoundError(missing)
    return ImageList(items=[image_out(item, storage) for item in items], next_cursor=None)


@router.get("/{image_id}", response_model=ImageOut, responses=errors(404, 422))
async def read(image_id: int, catalog: CatalogDep, runtime: RuntimeDep) -> ImageOut:
    item = None if _too_big(image_id) else await catalog.image(image_id)
    if item is None:
        raise NotFoundError(f"no image with id {image_id}")
    out = image_out(item, runtime.storage)
    if item.image.status == Status.SUCCEEDED:  # a file deleted behind blogimg's back shows here
        out.missing_files = [key for files in await catalog.image_files([image_id])
                             for key in await missing_files(runtime.storage, files)]
    return out


@router.get("/{image_id}/attempts", response_model=AttemptList, responses=errors(404, 422))
async def attempts(image_id: int, database: DatabaseDep) -> AttemptList:
    """The image's provider calls from the cost ledger, oldest first: outcome, HTTP status, latency, cost."""
    rows = None if _too_big(image_id) else await database.attempts.timeline(image_id)
    if rows is None:
        raise NotFoundError(f"no image with id {image_id}")
    return AttemptList(items=[AttemptOut(
        attempt=row.attempt, provider=row.provider, model=row.model, outcome=row.outcome.value,
        http_status=row.http_status, latency_ms=row.latency_ms, cost_usd=row.cost_usd,
        estimated_cost_usd=row.estimated_cost_usd, error=row.error, started_at=utc(row.started_at)) for row in rows])


@router.post("/{image_id}/repair", response_model=RepairOut,
             responses=errors(401, 404, 409, 422))
async def repair(image_id: int, catalog: CatalogDep, runtime: RuntimeDep,
                 remake: Annotated[bool, Query(description="When the master is gone too, queue the image for "
                                                           "a provider (costs money)")] = False) -> RepairOut:
    """Make a succeeded image's missing files again: from its stored master (free), or — with
    ``remake`` — by queueing it for a provider when the master is gone too."""
    files = [] if _too_big(image_id) else await catalog.image_files([image_id])
    if not files:
        raise NotFoundError(f"no image with id {image_id}")
    if files[0].status != Status.SUCCEEDED:
        raise ApiError(409, "conflict", f"image {image_id} is {files[0].status}; only succeeded images have files")
    done = await repair_image(runtime, files[0], ImagingOptions.from_settings(runtime.settings), remake=remake)
    not_repaired = done.report.not_repaired.get(image_id) if done.report else None
    if not_repaired:
        raise ApiError(409, "conflict", f"image {image_id} could not be repaired: {not_repaired}")
    if done.missing and done.report is None and done.remade is None:
        raise ApiError(409, "conflict", f"image {image_id} lost its master too; only a provider can make it "
                                        "again: POST again with remake=true (costs money)")
    item = await catalog.image(image_id)
    if item is None:  # deleted in between
        raise NotFoundError(f"no image with id {image_id}")
    return RepairOut(image=image_out(item, runtime.storage), missing_files=done.missing,
                     repaired_files=done.report.files if done.report else [],
                     remade_batch_id=done.remade.batch_id if done.remade else None)


@router.put("/{image_id}", response_model=ImageOut, responses=errors(401, 404, 413, 422))
async def edit(image_id: int, body: ImageUpdate, catalog: CatalogDep, runtime: RuntimeDep) -> ImageOut:
    """Change alt text, rating (1–5), focal point or tags; fields left out stay as they are."""
    values: ImageEdit = {}
    given = body.model_fields_set
    if "alt_text" in given:
        values["alt_text"] = body.alt_text
    if "rating" in given:
        values["rating"] = body.rating
    if "tags" in given:
        values["tags"] = list(body.tags or [])
    if "focal_point" in given:
        point = body.focal_point
        values["focal_x"], values["focal_y"] = (point.x, point.y) if point else (None, None)
    item = None if _too_big(image_id) else (
        await catalog.update_image(image_id, values) if values else await catalog.image(image_id))
    if item is None:
        raise NotFoundError(f"no image with id {image_id}")
    if "focal_point" in given and body.focal_point is not None:
        # The thumbnail is what a focal point is for: crop it again around the new point.
        options = ImagingOptions.from_settings(runtime.settings)
        if await refocus_thumbnail(catalog, runtime.storage, options, image_id,
                                   (body.focal_point.x, body.focal_point.y)):
            item = await catalog.image(image_id) or item
    return image_out(item, runtime.storage)


@router.delete("/{image_id}", status_code=204, responses=errors(401, 404, 422),
               response_class=Response)
async def remove(image_id: int, catalog: CatalogDep, runtime: RuntimeDep) -> Response:
    """Delete the image, its variants' rows and every file no other image shares."""
    keys = None if _too_big(image_id) else await catalog.delete_image(image_id)
    if keys is None:
        raise NotFoundError(f"no image with id {image_id}")
    for key in keys:  # after the row: a crash here leaves orphan files, which cleanup finds
        await runtime.storage.delete(key)
    return Response(status_code=204)


@router.post("/{image_id}/retry", status_code=202, response_model=ImageOut,
             responses=errors(401, 404, 409, 422))
async def retry(image_id: int, database: DatabaseDep, runtime: RuntimeDep) -> ImageOut:
    """Queue a failed image again."""
    before = None if _too_big(image_id) else await database.queue.requeue(image_id)
    if before is None:
        raise NotFoundError(f"no image with id {image_id}")
    if before != Status.FAILED:
        raise ApiError(409, "conflict", f"image {image_id} is {before}; only failed images are retried")
    item = await database.catalog.image(image_id)
    if item is None:  # deleted in between
        raise NotFoundError(f"no image with id {image_id}")
    return image_out(item, runtime.storage)


def _too_big(identifier: int) -> bool:
    # Ids are 32-bit in the schema; a larger number names nothing (and would overflow PostgreSQL).
    return not 0 < identifier < 2**31
