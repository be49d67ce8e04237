"""What handlers depend on, named as types: the runtime's parts, the settings, and the key check.

Keys are kept only as SHA-256 digests and compared in constant time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Header, Request

from blogimg.api.errors import ApiError
from blogimg.config import Settings
from blogimg.db.catalog import Catalog
from blogimg.db.database import Database
from blogimg.db.reporting import Reporting
from blogimg.pipeline.runtime import Runtime, open_runtime
from blogimg.providers.registry import ProviderRegistry
from blogimg.storage.base import Storage


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


@dataclass
class ApiState:
    """What handlers share: one runtime, opened by the lifespan (or on first use without one)."""

    settings: Settings
    storage: Storage
    registry: ProviderRegistry
    with_worker: bool
    provider_names: frozenset[str]
    key_digests: tuple[bytes, ...]
    runtime: Runtime | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _stack: contextlib.AsyncExitStack | None = None

    async def open(self) -> Runtime:
        if self.runtime is None:
            async with self._lock:
                if self.runtime is None:
                    stack = contextlib.AsyncExitStack()
                    self.runtime = await stack.enter_async_context(open_runtime(
                        self.settings, registry=self.registry, storage=self.storage,
                        with_providers=self.with_worker))
                    self._stack = stack
        return self.runtime

    async def close(self) -> None:
        if self._stack is not None:
            stack, self._stack, self.runtime = self._stack, None, None
            await stack.aclose()

    def check_key(self, authorization: str | None) -> None:
        """Raise 401 unless keys are off or the bearer key is one of them (constant-time compare)."""
        if not self.key_digests:
            return
        scheme, _, token = (authorization or "").partition(" ")
        offered = digest(token.strip()) if scheme.lower() == "bearer" and token.strip() else b""
        # Compare against every key, always, so timing says nothing about which one nearly matched.
        matched = False
        for known in self.key_digests:
            matched |= hmac.compare_digest(offered, known)
        if not matched:
            raise ApiError(401, "unauthorized", "a valid API key is required: Authorization: Bearer <key>",
                           {"WWW-Authenticate": "Bearer"})


def api_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


async def runtime(request: Request) -> Runtime:
    return await api_state(request).open()


async def database(request: Request) -> Database:
    return (await runtime(request)).database


async def catalog(request: Request) -> Catalog:
    return (await database(request)).catalog


async def reporting(request: Request) -> Reporting:
    return (await database(request)).reporting


async def authorized(request: Request,
                     authorization: Annotated[str | None, Header(description="Bearer <API key>")] = None) -> None:
    """Mutating routes depend on this: 401 unless keys are off or a valid one is given."""
    api_state(request).check_key(authorization)


StateDep = Annotated[ApiState, Depends(api_state)]
RuntimeDep = Annotated[Runtime, Depends(runtime)]
DatabaseDep = Annotated[Database, Depends(database)]
CatalogDep = Annotated[Catalog, Depends(catalog)]
ReportingDep = Annotated[Reporting, Depends(reporting)]
Authorized = Depends(authorized)
