"""``create_app(settings)``: the REST API and what its lifespan owns.

Every error leaves as ``{"error": {"code", "message"}}`` (api/errors.py). With keys configured,
every route but /healthz, sign-in and the docs needs a key or a signed-in session (api/auth.py).
Bodies above ``max_request_bytes`` get 413 before any handler reads them. Browsers on
``cors_origins`` may call it (CORS); ``/docs`` needs no network (api/docs.py); local files are
served (api/files.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from blogimg.api.auth import authenticate, document_security
from blogimg.api.deps import ApiState
from blogimg.api.docs import install_docs
from blogimg.api.errors import error_response, install_error_handlers
from blogimg.api.files import mount_local_files
from blogimg.api.keys import KeyRing
from blogimg.api.routes import (
    alerts,
    analytics,
    batches,
    bulk,
    events,
    failures,
    images,
    posts,
    service,
    webhooks,
)
from blogimg.config import Settings
from blogimg.db.failures import describe
from blogimg.pipeline.worker import Worker
from blogimg.providers.registry import ProviderRegistry
from blogimg.storage.base import Storage
from blogimg.storage.factory import build_storage
from blogimg.web import failures as failures_page
from blogimg.web import gallery, image_page, overview, posts_page, sign_in
from blogimg.web import webhooks as webhooks_page
from blogimg.web.assets import mount_static

log = logging.getLogger(__name__)
#: Seconds the embedded worker starts no image after a full disk (or a database out of reach) before
#: it tries again: a server outlives a passing outage, rather than go on taking jobs nothing makes.
EMBEDDED_RESUME_AFTER = 30.0


class BodySizeLimit:
    """413 for bodies over the cap, whether or not they declare a Content-Length."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _too_large(self.max_bytes, send)
            return
        received = 0
        too_large = False

        async def limited() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _BodyTooLarge:
            await _too_large(self.max_bytes, send)


class _BodyTooLarge(BaseException):  # noqa: N818
    # A BaseException on purpose: FastAPI turns any Exception raised while reading a body into
    # a 400 "error parsing the body"; this one must reach BodySizeLimit to become a 413.
    pass


async def _too_large(limit: int, send: Send) -> None:
    response = error_response(413, "too_large", f"request body is over {limit} bytes")
    await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def create_app(settings: Settings, *, storage: Storage | None = None, run_worker: bool = False,
               registry: ProviderRegistry | None = None) -> FastAPI:
    """The API over ``settings``; with ``run_worker`` an embedded worker drains the queue too."""
    registry = registry or ProviderRegistry()
    state = ApiState(settings=settings, storage=storage or build_storage(settings), registry=registry,
                     with_worker=run_worker, provider_names=frozenset(registry.names()),
                     keys=KeyRing.from_settings(settings))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await state.open()  # the one runtime: one pool, one migration run
        try:
            if run_worker:
                worker = runtime.worker()
                worker.resume_after = EMBEDDED_RESUME_AFTER
                task = asyncio.create_task(worker.run(), name="blogimg-embedded-worker")
                task.add_done_callback(_report_end)  # said when it happens, not at shutdown
                try:
                    yield
                finally:
                    await _stop_worker(worker, task)
            else:
                yield
        finally:
            await state.close()

    app = FastAPI(title="blogimg", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Images for blog posts: generate, optimize, store and catalogue.",
                  dependencies=[Depends(authenticate)])  # on every route: none can forget it
    app.state.api = state
    install_error_handlers(app)
    _document_provider_names(app, sorted(state.provider_names))
    document_security(app)
    # failures before images: GET /api/images/{image_id} would take "failures" for an id
    routers: tuple[APIRouter, ...] = (failures.router, images.router, posts.router, batches.router, events.router, service.router)
    routers += (overview.router, gallery.router, posts_page.router)  # the status page's views (web/)
    routers += (image_page.router, failures_page.router)
    routers += (sign_in.router,)  # /sign-in, /sign-out
    routers += (alerts.router,)  # /api/alerts: firing now and the history
    routers += (webhooks.router, webhooks_page.router)  # /api/webhooks (endpoints, delivery log), the /webhooks view
    routers += (analytics.router, bulk.router)  # /api/analytics, /api/bulk/…, DELETE /api/posts/{id}/images
    for router in routers:
        app.include_router(router)
    install_docs(app)
    mount_static(app)  # the page's CSS and scripts at /static: before the stored files, which must not cover it
    # The routers' own routes: the app lists an included router as one entry with no path.
    api_paths = [str(getattr(route, "path", "")) for owner in (app.router, *routers) for route in owner.routes]
    mount_local_files(app, settings, api_paths)  # last, so that it knows every path it must not cover
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    if settings.cors_origins:
        # Added last, so outermost: a 413 or an error response carries the CORS headers too,
        # and the browser shows the page the real error rather than "blocked by CORS".
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST", "PUT", "DELETE"],
                           allow_headers=["Authorization", "Idempotency-Key", "Content-Type"])
    return app


async def _stop_worker(worker: Worker, task: asyncio.Task[None]) -> None:
    """Shutdown: stop claiming, let jobs finish within the grace period, give back the rest."""
    worker.stop()
    with contextlib.suppress(Exception):  # _report_end has said it
        await task


def _report_end(task: asyncio.Task[None]) -> None:
    error = None if task.cancelled() else task.exception()
    if error is not None:
        log.error("the embedded worker failed, and no queued image is made until the server restarts: %s",
                  describe(error), exc_info=error)


def _document_provider_names(app: FastAPI, names: list[str]) -> None:
    """Put the known provider names into the schema as an enum: the API rejects any other."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            options = schema.get("components", {}).get("schemas", {}).get("GenerateOptions")
            if options:
                items = options["properties"]["providers"]
                for variant in items.get("anyOf", [items]):
                    if variant.get("type") == "array":
                        variant["items"] = {"type": "string", "enum": names}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
