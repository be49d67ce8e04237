"""What handlers depend on, named as types: the runtime's parts and the settings.

Who may call what is api/auth.py's: one dependency of the whole app, over the keys held here.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from blogimg.api.event_hub import EventHub
from blogimg.api.keys import KeyRing
from blogimg.config import Settings
from blogimg.db.catalog import Catalog
from blogimg.db.database import Database
from blogimg.db.reporting import Reporting
from blogimg.pipeline.runtime import Runtime, open_runtime
from blogimg.providers.registry import ProviderRegistry
from blogimg.storage.base import Storage


@dataclass
class ApiState:
    """What handlers share: one runtime, opened by the lifespan (or on first use without one)."""

    settings: Settings
    storage: Storage
    registry: ProviderRegistry
    with_worker: bool
    provider_names: frozenset[str]
    keys: KeyRing  #: digests of the full and read-only keys (api/keys.py)
    runtime: Runtime | None = None
    event_hub: EventHub | None = None  #: the one poller of events for every SSE client (api/event_hub.py)
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

    async def open_event_hub(self) -> EventHub:
        if self.event_hub is None:
            catalog = (await self.open()).database.catalog
            self.event_hub = self.event_hub or EventHub(catalog)
        return self.event_hub

    async def close(self) -> None:
        if self.event_hub is not None:  # first: it reads through the runtime's database
            hub, self.event_hub = self.event_hub, None
            await hub.close()
        if self._stack is not None:
            stack, self._stack, self.runtime = self._stack, None, None
            await stack.aclose()


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


StateDep = Annotated[ApiState, Depends(api_state)]
RuntimeDep = Annotated[Runtime, Depends(runtime)]
DatabaseDep = Annotated[Database, Depends(database)]
CatalogDep = Annotated[Catalog, Depends(catalog)]
ReportingDep = Annotated[Reporting, Depends(reporting)]
