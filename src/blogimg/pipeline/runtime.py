"""Everything a worker needs, opened together and closed together.

``generate`` (an embedded worker for one batch), ``blogimg worker`` (workers alone) and
``blogimg serve`` (the API with an embedded worker) all make their workers here, so they share
one way of building providers, the chain, storage, the catalogue and the budget.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from blogimg.config import Settings
from blogimg.db.engine import open_database
from blogimg.db.repository import Repository
from blogimg.domain import ProgressEvent
from blogimg.imaging.process import ImagingOptions
from blogimg.pipeline.budget import Budget
from blogimg.pipeline.chain import ProviderChain
from blogimg.pipeline.worker import Worker
from blogimg.providers.registry import ProviderRegistry
from blogimg.providers.vision import Captioner, build_captioner
from blogimg.storage.base import Storage
from blogimg.storage.factory import build_storage

EventCallback = Callable[[ProgressEvent], None]


@dataclass
class Runtime:
    settings: Settings
    repository: Repository
    storage: Storage
    chain: ProviderChain
    captioner: Captioner | None

    def worker(self, *, on_event: EventCallback | None = None, concurrency: int | None = None) -> Worker:
        settings = self.settings
        return Worker(
            self.repository, self.storage, self.chain, imaging=ImagingOptions.from_settings(settings),
            concurrency=concurrency or settings.max_concurrent, lease_seconds=settings.lease_seconds,
            max_job_attempts=settings.max_job_attempts, quality=settings.quality, on_event=on_event,
            budget=Budget(settings.budget_daily_usd, settings.budget_monthly_usd),
            captioner=self.captioner, alt_text_max_chars=settings.alt_text_max_chars,
            shutdown_grace=settings.shutdown_grace,
        )


def build_chain(settings: Settings, providers: Sequence) -> ProviderChain:
    return ProviderChain(
        providers, retry_attempts=settings.retry_attempts, retry_delay=settings.retry_delay,
        max_delay=settings.retry_max_delay, fallback_on_refusal=settings.fallback_on_refusal,
        timeout=settings.provider_timeout, rate_limits=settings.rate_limits,
        breaker_threshold=settings.breaker_threshold, breaker_cooldown=settings.breaker_cooldown,
    )


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    providers: Sequence[str] | None = None,
    registry: ProviderRegistry | None = None,
    storage: Storage | None = None,
) -> AsyncIterator[Runtime]:
    """Build providers, storage and the catalogue; every refusal happens before anything opens."""
    registry = registry or ProviderRegistry()
    captioner = build_captioner(settings)
    names = list(providers or settings.providers or registry.default_order())
    provider_objects = registry.build(names, settings)
    storage = storage or build_storage(settings)
    chain = build_chain(settings, provider_objects)
    try:
        engine, sessions = await open_database(settings.database_url)
    except BaseException:
        await chain.aclose()
        raise
    try:
        yield Runtime(settings, Repository(engine, sessions), storage, chain, captioner)
    finally:
        await chain.aclose()
        if captioner is not None:
            await captioner.aclose()
        await engine.dispose()


async def run_workers(
    settings: Settings,
    *,
    providers: Sequence[str] | None = None,
    registry: ProviderRegistry | None = None,
    storage: Storage | None = None,
    on_event: EventCallback | None = None,
    concurrency: int | None = None,
    handle_signals: bool = True,
) -> tuple[int, int]:
    """``blogimg worker``: work the queue until SIGTERM or SIGINT.

    Returns (images finished, jobs given back to the queue unfinished).

    The first signal stops claiming and lets jobs in flight finish within ``shutdown_grace``;
    a second one gives whatever is still running back to the queue at once.
    """
    async with open_runtime(settings, providers=providers, registry=registry, storage=storage) as runtime:
        worker = runtime.worker(on_event=on_event, concurrency=concurrency)
        signals = 0

        def on_signal() -> None:
            nonlocal signals
            signals += 1
            worker.stop(immediately=signals > 1)

        loop = asyncio.get_running_loop()
        if handle_signals:
            for number in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(number, on_signal)
        try:
            await worker.run()
        finally:
            if handle_signals:
                for number in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(number)
        return worker.done, worker.released
