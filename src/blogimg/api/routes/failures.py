"""/api/images/failures and /api/images/retry: failed images by error code, and retrying every one a filter matches.

Included before the images router: ``GET /api/images/{image_id}`` would otherwise take
``failures`` for an id.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query

from blogimg.api.deps import DatabaseDep
from blogimg.api.errors import ApiError, errors
from blogimg.api.routes.common import naive_utc, utc
from blogimg.api.schemas import (
    NO_NUL,
    BulkRetryRequest,
    CountedOut,
    FailedImageOut,
    FailureGroupOut,
    FailuresOut,
    GenerateResponse,
    Kind,
)
from blogimg.db.batch_rows import existing_batch
from blogimg.db.failed_images import FailureFilter, FailureReport
from blogimg.db.jobs import FailedToRetry
from blogimg.domain import PromptKind
from blogimg.pipeline.batches import run_batch

router = APIRouter(prefix="/api/images", tags=["images"])

#: The most failed images one bulk retry queues. Each may cost a provider call, so a filter that
#: matches more is refused with the count, and the client narrows it (or retries in parts).
RETRY_LIMIT = 1000


@router.get("/failures", response_model=FailuresOut, responses=errors(422))
async def failures(
    database: DatabaseDep,
    q: Annotated[str | None, Query(max_length=200, pattern=NO_NUL, description="Text in the prompt or alt text")] = None,
    provider: Annotated[str | None, Query(max_length=100, pattern=NO_NUL, description="A provider called")] = None,
    post_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    kind: Kind | None = None,
    error_code: Annotated[str | None, Query(max_length=32, pattern=NO_NUL)] = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> FailuresOut:
    """Failed images by error code: how many, the providers called, the commonest messages, the newest ones."""
    chosen = FailureFilter(text=q or None, provider=provider or None, post_id=post_id,
                           kind=PromptKind(kind) if kind else None, error_code=error_code or None,
                           created_from=naive_utc(created_from), created_to=naive_utc(created_to))
    return failures_out(await database.failed_images.report(chosen))


@router.post("/retry", status_code=202, response_model=GenerateResponse, responses=errors(401, 403, 409, 413, 422))
async def retry_matching(body: BulkRetryRequest, database: DatabaseDep,
                         idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None,
                         ) -> GenerateResponse:
    """Queue every failed image the filter matches as one batch (at most ``RETRY_LIMIT``); 202 with the batch.

    A repeat with the same ``Idempotency-Key`` answers with the first batch and queues nothing.
    """
    request_hash = hashlib.sha256(
        json.dumps(body.model_dump(mode="json", exclude_unset=True), sort_keys=True).encode()).hexdigest()
    if idempotency_key and (earlier := await existing_batch(database.sessions, idempotency_key, request_hash)):
        return GenerateResponse(batch_id=earlier.batch_id, image_ids=list(earlier.image_ids))
    chosen = FailureFilter(text=body.q or None, provider=body.provider, post_id=body.post_id,
                           kind=PromptKind(body.kind) if body.kind else None, error_code=body.error_code,
                           created_from=naive_utc(body.created_from), created_to=naive_utc(body.created_to))
    image_ids = await database.failed_images.matching_ids(chosen, limit=RETRY_LIMIT + 1)
    if len(image_ids) > RETRY_LIMIT:
        raise ApiError(422, "validation", f"the filter matches more than {RETRY_LIMIT} failed images; narrow it "
                                          "(provider, post_id, kind, error_code, created_from/created_to, q)")
    if not image_ids:
        raise ApiError(409, "conflict", "no failed image matches this filter")
    summary = await run_batch(database, FailedToRetry(image_ids=image_ids, idempotency_key=idempotency_key,
                                                      request_hash=request_hash))
    assert summary.batch_id is not None
    return GenerateResponse(batch_id=summary.batch_id, image_ids=list(summary.image_ids))


def failures_out(report: FailureReport) -> FailuresOut:
    """The report as the API's JSON (the failures view renders the same)."""
    return FailuresOut(
        total=report.total, other_codes=report.other_codes, retry_limit=RETRY_LIMIT,
        groups=[FailureGroupOut(
            error_code=group.error_code, count=group.count,
            newest_at=utc(group.newest_at) if group.newest_at else None,
            providers=[CountedOut(value=item.value, count=item.count) for item in group.providers],
            messages=[CountedOut(value=item.value, count=item.count) for item in group.messages],
            examples=[FailedImageOut(id=example.image_id, post_id=example.post_id, prompt=example.prompt,
                                     error_message=example.message,
                                     failed_at=utc(example.failed_at) if example.failed_at else None)
                      for example in group.examples])
            for group in report.groups])
