"""``create_app(settings)``: the REST API, its errors, its keys, and what its lifespan owns.

Every error leaves as ``{"error": {"code", "message"}}``. Mutating routes need
``Authorization: Bearer <key>`` when ``BLOGIMG_API_KEYS`` is set; keys are kept only as SHA-256
digests and compared in constant time. Bodies above ``max_request_bytes`` get 413 before any
handler reads them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from blogimg.config import Settings
from blogimg.db.catalog import Catalog
from blogimg.db.engine import open_database
from blogimg.db.repository import Repository
from blogimg.errors import BlogimgError, ConflictError, InputError, NotFoundError
from blogimg.providers.registry import ProviderRegistry
from blogimg.storage.base import Storage
from blogimg.storage.factory import build_storage

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An HTTP error with our body shape."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


@dataclass
class ApiState:
    """What handlers share; opened on first use so the app also works without its lifespan."""

    settings: Settings
    storage: Storage
    provider_names: frozenset[str]
    key_digests: tuple[bytes, ...]
    catalog: Catalog | None = None
    repository: Repository | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _engine: object | None = None

    async def open(self) -> ApiState:
        if self.catalog is None:
            async with self._lock:
                if self.catalog is None:
                    engine, sessions = await open_database(self.settings.database_url)
                    self._engine = engine
                    self.repository = Repository(engine, sessions)
                    self.catalog = Catalog(engine, sessions)
        return self

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()  # type: ignore[attr-defined]
            self._engine, self.catalog, self.repository = None, None, None


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def check_key(state: ApiState, authorization: str | None) -> None:
    """Raise 401 unless keys are off or the bearer key is one of them (constant-time compare)."""
    if not state.key_digests:
        return
    scheme, _, token = (authorization or "").partition(" ")
    offered = digest(token.strip()) if scheme.lower() == "bearer" and token.strip() else b""
    # Compare against every key, always, so timing says nothing about which one nearly matched.
    matched = False
    for known in state.key_digests:
        matched |= hmac.compare_digest(offered, known)
    if not matched:
        raise ApiError(401, "unauthorized", "a valid API key is required: Authorization: Bearer <key>",
                       {"WWW-Authenticate": "Bearer"})


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
    response = JSONResponse({"error": {"code": "too_large", "message": f"request body is over {limit} bytes"}},
                            status_code=413)
    await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def create_app(settings: Settings, *, storage: Storage | None = None, run_worker: bool = False,
               registry: ProviderRegistry | None = None) -> FastAPI:
    """The API over ``settings``; with ``run_worker`` an embedded worker drains the queue too."""
    registry = registry or ProviderRegistry()
    state = ApiState(settings=settings, storage=storage or build_storage(settings),
                     provider_names=frozenset(registry.names()),
                     key_digests=tuple(digest(key) for key in settings.api_keys))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.open()
        async with contextlib.AsyncExitStack() as stack:
            if run_worker:
                from blogimg.pipeline.runtime import open_runtime

                runtime = await stack.enter_async_context(
                    open_runtime(settings, registry=registry, storage=state.storage))
                worker = runtime.worker()
                task = asyncio.create_task(worker.run(), name="blogimg-embedded-worker")
                stack.push_async_callback(_stop_worker, worker, task)
            try:
                yield
            finally:
                await state.close()

    app = FastAPI(title="blogimg", version="0.1.0", lifespan=lifespan,
                  description="Images for blog posts: generate, optimize, store and catalogue.")
    app.state.api = state
    _install_error_handlers(app)
    _document_provider_names(app, sorted(state.provider_names))
    from blogimg.api.routes import batches, events, images, posts, service

    for module in (images, posts, batches, events, service):
        app.include_router(module.router)
    if settings.storage == "local" and settings.public_base_url.startswith("/"):
        from starlette.staticfiles import StaticFiles

        settings.storage_path.mkdir(parents=True, exist_ok=True)
        app.mount(settings.public_base_url.rstrip("/") or "/files", StaticFiles(directory=settings.storage_path),
                  name="files")
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    return app


async def _stop_worker(worker, task: asyncio.Task) -> None:  # type: ignore[no-untyped-def]
    """Shutdown: stop claiming, let jobs finish within the grace period, give back the rest."""
    worker.stop()
    try:
        await task
    except Exception:
        log.exception("the embedded worker failed")


def _document_provider_names(app: FastAPI, names: list[str]) -> None:
    """Put the known provider names into the schema as an enum: the API rejects any other."""
    build = app.openapi

    def openapi() -> dict:
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


def _install_error_handlers(app: FastAPI) -> None:
    def body(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return body(error.status, error.code, error.message, error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "request"
        return body(422, "validation", f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}
        return body(error.status_code, codes.get(error.status_code, "http_error"), str(error.detail),
                    getattr(error, "headers", None))

    @app.exception_handler(NotFoundError)
    async def not_found(request: Request, error: NotFoundError) -> JSONResponse:
        return body(404, "not_found", str(error))

    @app.exception_handler(ConflictError)
    async def conflict(request: Request, error: ConflictError) -> JSONResponse:
        return body(422, "conflict", str(error))

    @app.exception_handler(InputError)
    async def bad_input(request: Request, error: InputError) -> JSONResponse:
        return body(422, "validation", str(error))

    @app.exception_handler(BlogimgError)
    async def blogimg_error(request: Request, error: BlogimgError) -> JSONResponse:
        log.warning("request failed: %s", error)
        return body(503, "unavailable", str(error))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=error)
        return body(500, "internal", "internal error; see the server log")
