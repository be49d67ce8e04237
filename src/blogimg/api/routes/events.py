"""/api/events: image status changes as Server-Sent Events, from any process, resumable.

Events are rows written in the same transaction as each change, so every API node sees every
worker's changes. ``Last-Event-ID`` (or ``?after=``) resumes after the last event received;
without either, the stream starts at now.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from blogimg.api.deps import CatalogDep
from blogimg.api.errors import ApiError, errors
from blogimg.db.catalog import LARGEST_ID, Catalog

router = APIRouter(tags=["events"])
POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0


@router.get("/api/events", response_class=StreamingResponse, responses={
    200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
          "description": "event: image · id: event id · data: {image_id, batch_id, status, at}"},
    **errors(422)})
async def events(
    request: Request, catalog: CatalogDep,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
    after: Annotated[int | None, Query(ge=0, le=LARGEST_ID)] = None,
    limit: Annotated[int | None, Query(ge=1, le=100_000, description="Stop after this many events")] = None,
) -> StreamingResponse:
    start = after
    resume = (last_event_id or "").strip()
    if start is None and resume:
        # Checked here, not left to the database: there it would fail only once the stream had
        # begun, as a 200 cut short. ASCII digits only: str.isdigit() also takes "²".
        if not (resume.isascii() and resume.isdigit() and int(resume) <= LARGEST_ID):
            raise ApiError(422, "validation", f"Last-Event-ID must be an event id, 0 to {LARGEST_ID}")
        start = int(resume)
    if start is None:
        start = await catalog.latest_event_id()
    return StreamingResponse(_stream(request, catalog, start, limit), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _stream(request: Request, catalog: Catalog, last_id: int, limit: int | None) -> AsyncIterator[str]:
    sent = 0
    idle = 0.0
    yield "retry: 2000\n\n"
    while limit is None or sent < limit:
        if await request.is_disconnected():
            return
        batch = await catalog.events_after(last_id, limit=min(200, (limit - sent) if limit else 200))
        for event in batch:
            payload = {"image_id": event.image_id, "batch_id": event.batch_id, "status": event.status,
                       "at": event.created_at.isoformat() + "Z"}
            yield f"id: {event.id}\nevent: image\ndata: {json.dumps(payload)}\n\n"
            last_id, sent, idle = event.id, sent + 1, 0.0
        if not batch:
            await asyncio.sleep(POLL_SECONDS)
            idle += POLL_SECONDS
            if idle >= KEEPALIVE_SECONDS:
                yield ": keep-alive\n\n"
                idle = 0.0
