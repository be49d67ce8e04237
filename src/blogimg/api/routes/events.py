"""/api/events: image status changes as Server-Sent Events, from any process, resumable.

Events are rows written in the same transaction as each change, so every API node sees every
worker's changes. ``Last-Event-ID`` (or ``?after=``) resumes after the last event received;
with both, after the larger (a browser's reconnect keeps the page's ``?after=`` and adds the newest
id it has); without either, the stream starts at now. One poller per process reads them for every client
(api/event_hub.py); a connection costs the database nothing while it listens.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from blogimg.api.auth import still_allowed
from blogimg.api.deps import StateDep
from blogimg.api.errors import ApiError, errors
from blogimg.api.event_hub import EventHub, Subscription
from blogimg.db.catalog import LARGEST_ID

router = APIRouter(tags=["events"])
KEEPALIVE_SECONDS = 15.0
#: How often a quiet stream looks whether its client has gone (the server learns it from the
#: socket only when it next writes), so that a closed tab leaves no subscriber behind for long.
DISCONNECT_CHECK_SECONDS = 1.0
#: Events sent in one write when more are waiting: one send for a burst, not one per event.
WRITE_EVENTS = 200
#: How often an open stream asks again whether its key or session still lets it in: sign-out,
#: an expired session or a removed key ends it within this long (one query per stream, rarely).
ACCESS_CHECK_SECONDS = 60.0


@router.get("/api/events", response_class=StreamingResponse, responses={
    200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
          "description": "event: image · id: event id · data: {image_id, batch_id, status, at}"},
    **errors(422)})
async def events(
    request: Request, state: StateDep,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
    after: Annotated[int | None, Query(ge=0, le=LARGEST_ID)] = None,
    limit: Annotated[int | None, Query(ge=1, le=100_000, description="Stop after this many events")] = None,
) -> StreamingResponse:
    start = after
    resume = (last_event_id or "").strip()
    if resume:
        # Checked here, not left to the database: there it would fail only once the stream had
        # begun, as a 200 cut short. ASCII digits only: str.isdigit() also takes "²".
        if not (resume.isascii() and resume.isdigit() and int(resume) <= LARGEST_ID):
            raise ApiError(422, "validation", f"Last-Event-ID must be an event id, 0 to {LARGEST_ID}")
        # EventSource reconnects to the URL it opened (the page's ``?after=``) and adds the newest
        # id it received: the larger of the two is where the client really is.
        start = int(resume) if start is None else max(start, int(resume))
    hub = await state.open_event_hub()
    subscription = await hub.subscribe(start)
    return StreamingResponse(_stream(request, hub, subscription, limit), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _stream(request: Request, hub: EventHub, subscription: Subscription,
                  limit: int | None) -> AsyncIterator[str]:
    try:
        sent = 0
        quiet_since = checked_at = time.monotonic()
        yield "retry: 2000\n\n"
        while limit is None or sent < limit:
            if time.monotonic() - checked_at >= ACCESS_CHECK_SECONDS:
                if not await still_allowed(request):
                    return  # the browser reconnects, is refused, and the page sends the person to sign in
                checked_at = time.monotonic()
            ready = await subscription.next_events(DISCONNECT_CHECK_SECONDS, WRITE_EVENTS if limit is None
                                                   else min(WRITE_EVENTS, limit - sent))
            if ready:
                yield "".join(event.frame for event in ready)
                sent, quiet_since = sent + len(ready), time.monotonic()
                continue
            if subscription.ended or await request.is_disconnected():
                return  # dropped by the hub (it fell too far behind: it resumes with Last-Event-ID), or gone
            if time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
                yield ": keep-alive\n\n"
                quiet_since = time.monotonic()
    finally:
        hub.unsubscribe(subscription)
