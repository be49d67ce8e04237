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
from dataclasses import dataclass, field

from blogimg.config import Settings
from blogimg.db.database import Database
from blogimg.domain import ProgressEvent
from blogimg.imaging.decode import harden
from blogimg.imaging.process import ImagingOptions
from blogimg.pipeline.alerting import AlertEvaluator, circuit_states
from blogimg.pipeline.budget import Budget
from blogimg.pipeline.chain import CaptionChain, ProviderChain
from blogimg.pipeline.provenance import Provenance
from blogimg.pipeline.webhook_endpoints import configure_endpoints
from blogimg.pipeline.webhook_sender import WebhookSender
from blogimg.pipeline.worker import Worker
from blogimg.providers.base import ImageProvider
from blogimg.providers.registry import CaptionerRegistry, ProviderRegistry
from blogimg.storage.base import Storage
from blogimg.storage.factory import build_storage

EventCallback = Callable[[ProgressEvent], None]


@dataclass
class Runtime:
    """The open database, storage and — when this process makes images — providers."""

    settings: Settings
    database: Database
    storage: Storage
    chain: ProviderChain | None  #: None when the runtime only serves the catalogue
    captions: CaptionChain | None  #: None unless BLOGIMG_ALT_TEXT_VISION names a captioner
    #: C2PA keeping and signing, built once (it reads the certificate and signs a probe): every
    #: worker of this runtime shares it
    provenance: Provenance = field(default_factory=Provenance)

    def worker(self, *, on_event: EventCallback | None = None, concurrency: int | None = None) -> Worker:
        settings = self.settings
        if self.chain is None:
            raise RuntimeError("this runtime was opened without providers; it cannot run a worker")
        worker = Worker(
            self.database.queue, self.database.ledger, self.storage, self.chain,
            imaging=ImagingOptions.from_settings(settings),
            concurrency=concurrency or settings.max_concurrent, lease_seconds=settings.lease_seconds,
            max_job_attempts=settings.max_job_attempts, quality=settings.quality, on_event=on_event,
            budget=Budget(settings.budget_daily_usd, settings.budget_monthly_usd),
            captions=self.captions, alt_text_max_chars=settings.alt_text_max_chars,
            shutdown_grace=settings.shutdown_grace,
        )
        worker.alert_loop = AlertEvaluator(self.database, settings, circuit_states(self.chain.breakers)).run
        worker.webhook_sender = WebhookSender.from_settings(settings, self.database.webhooks)
        worker.provenance = self.provenance
        return worker


def build_chain(settings: Settings, providers: Sequence[ImageProvider]) -> ProviderChain:
    return ProviderChain.from_settings(providers, settings)


def build_caption_chain(settings: Settings, captioners: CaptionerRegistry | None = None) -> CaptionChain | None:
    """The chain of the configured captioner, or None when alt text is derived from prompts."""
    if settings.alt_text_vision == "off":
        return None
    registry = captioners or CaptionerRegistry()
    return CaptionChain.from_settings(registry.build([settings.alt_text_vision], settings), settings)


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    providers: Sequence[str] | None = None,
    registry: ProviderRegistry | None = None,
    storage: Storage | None = None,
    with_providers: bool = True,
    captioners: CaptionerRegistry | None = None,
) -> AsyncIterator[Runtime]:
    """Build providers, storage and the catalogue; every refusal happens before anything opens.

    ``with_providers=False`` opens only the catalogue and storage (an API without a worker).
    """
    harden()  # libvips' process-wide settings, before any thread (a provider, a job) uses it
    chain: ProviderChain | None = None
    captions: CaptionChain | None = None
    provenance = Provenance()
    if with_providers:
        registry = registry or ProviderRegistry()
        captions = build_caption_chain(settings, captioners)
        names = list(providers or settings.providers or registry.default_order())
        try:
            chain = build_chain(settings, registry.build(names, settings))
            # Reading the certificate and signing a probe is blocking work: off the event loop.
            provenance = await asyncio.to_thread(Provenance.from_settings, settings)
        except BaseException:
            await _close(chain, captions)
            raise
    try:
        storage = storage or build_storage(settings)
        database = await Database.open(settings.database_url)
    except BaseException:
        await _close(chain, captions)
        raise
    try:
        await configure_endpoints(settings, database.webhooks)  # BLOGIMG_WEBHOOK_URLS, checked and in sync
    except BaseException:
        await _close(chain, captions)
        await database.close()
        raise
    try:
        yield Runtime(settings, database, storage, chain, captions, provenance)
    finally:
        await _close(chain, captions)
        await database.close()


async def _close(*chains: ProviderChain | CaptionChain | None) -> None:
    for chain in chains:
        if chain is not None:
            await chain.aclose()


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
