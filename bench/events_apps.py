"""The server of bench/events.py: ``blogimg serve``'s app and server, one process, on loopback.

    python -m bench.events_apps --side blogimg|per-connection --port PORT

- ``blogimg``: the app as ``serve`` runs it (create_app with an embedded worker, served by
  api/server.run_server), with an offline fake provider that answers at once with a small image.
- ``per-connection``: the same, with ``GET /api/events`` replaced by the route as it was before
  the event hub (HEAD 0564b48): each connection polls the database on its own twice a second.

Both count the SELECTs on image_events that reach the database (a ``before_cursor_execute``
listener on every engine) and answer the count at ``GET /bench/event-queries``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import FastAPI, Header, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import event
from sqlalchemy.engine import Engine

from blogimg.api.app import create_app
from blogimg.api.deps import CatalogDep
from blogimg.api.server import ServerLimits, run_server
from blogimg.config import Settings
from blogimg.db.catalog import Catalog
from blogimg.providers.registry import ProviderRegistry
from blogimg.testing import FakeProvider

EVENT_QUERIES = {"count": 0}


def _count(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
    if statement.lstrip().upper().startswith("SELECT") and "image_events" in statement:
        EVENT_QUERIES["count"] += 1


def build(side: str) -> FastAPI:
    event.listen(Engine, "before_cursor_execute", _count)  # every engine, the app's included
    registry = ProviderRegistry({}, plugins=False)
    registry.register("fake", FakeProvider("fake", image_size=(64, 48)))
    settings = Settings(providers=["fake"], variant_widths=[48], avif_effort=0)
    app = create_app(settings, run_worker=True, registry=registry)
    if side == "per-connection":
        app.add_api_route("/api/events", per_connection_events, methods=["GET"])
        app.router.routes.insert(0, app.router.routes.pop())  # the first route that matches answers

    @app.get("/bench/event-queries")
    async def event_queries() -> dict[str, int]:
        return EVENT_QUERIES

    return app


# --- the baseline: GET /api/events before the hub, as it was (HEAD 0564b48, routes/events.py) ---

async def per_connection_events(
    request: Request, catalog: CatalogDep,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
    after: Annotated[int | None, Query(ge=0)] = None,
    limit: Annotated[int | None, Query(ge=1, le=100_000)] = None,
) -> StreamingResponse:
    start = after if after is not None else int(last_event_id) if last_event_id else None
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
        for row in batch:
            payload = {"image_id": row.image_id, "batch_id": row.batch_id, "status": row.status,
                       "at": row.created_at.isoformat() + "Z"}
            yield f"id: {row.id}\nevent: image\ndata: {json.dumps(payload)}\n\n"
            last_id, sent, idle = row.id, sent + 1, 0.0
        if not batch:
            await asyncio.sleep(0.5)
            idle += 0.5
            if idle >= 15.0:
                yield ": keep-alive\n\n"
                idle = 0.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", choices=["blogimg", "per-connection"], required=True)
    parser.add_argument("--port", type=int, required=True)
    arguments = parser.parse_args(argv)
    run_server(build(arguments.side), host="127.0.0.1", port=arguments.port, limits=ServerLimits())


if __name__ == "__main__":
    main()
