"""The worker's webhook sender: claim due deliveries from the outbox, sign them, post them, record what happened.

Runs beside the worker's jobs (pipeline/worker.py starts it). Each delivery is claimed under a
lease (db/webhook_deliveries.py), so two workers never post one at once and a killed worker's
claims are sent by another after the lease. The answer decides what follows:

- 2xx: delivered.
- 410 Gone: the receiver wants no more; the delivery fails and the endpoint is disabled, which
  fails its other pending deliveries too.
- anything else — another status, a redirect (never followed), a refused address, a timeout, a
  connection that fails: tried again after the next delay of ``retry_delays`` (by default 5 s,
  5 min, 30 min, 2 h, 5 h and 10 h: about 18 hours in all); after the last, failed.

Every attempt is signed afresh (Standard Webhooks receivers refuse old timestamps) with the same
``webhook-id``, by which receivers recognise a repeat. Connections go through the download
policy's network backend: the host is resolved and every address checked at each connection,
so a name whose DNS answer turned private after it was configured is refused. Neither secrets
nor payloads are ever logged; a response body is never read.

Polling is a plain read (``due_now``) until something is due — every second, every
``idle_interval`` while no endpoint is enabled — since a claim is a write, and SQLite has one
writer. A one-shot run (``blogimg generate``) ends with :meth:`WebhookSender.finish`: its last
events (the batch's last images, batch.done) go before the process exits, not whenever another
worker happens to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence

import httpcore2
import httpx2

from blogimg.config import Settings
from blogimg.db.failures import describe
from blogimg.db.webhook_deliveries import ClaimedDelivery, Webhooks
from blogimg.pipeline.webhook_signing import signed_headers
from blogimg.providers.download import (
    DownloadRefusedError,
    PublicOnlyBackend,
    Resolver,
    system_resolver,
)

log = logging.getLogger(__name__)
DEFAULT_RETRY_DELAYS = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0)
USER_AGENT = "blogimg-webhooks/1"
#: The longest a one-shot run waits for its last deliveries (see ``finish``), seconds.
FINAL_ROUND_SECONDS = 5.0


class WebhookSender:
    """Sends the outbox's due deliveries, ``batch_size`` at a time, until cancelled or finished."""

    def __init__(self, webhooks: Webhooks, *, timeout: float = 10.0,
                 retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS, allow_loopback: bool = False,
                 batch_size: int = 20, poll_interval: float = 1.0, idle_interval: float = 5.0,
                 resolver: Resolver = system_resolver, clock: Callable[[], float] = time.time) -> None:
        self.webhooks = webhooks
        self.timeout = timeout
        self.retry_delays = tuple(retry_delays)
        self.allow_loopback = allow_loopback
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.idle_interval = idle_interval  #: between polls while no endpoint is enabled
        self._resolver = resolver
        self._clock = clock
        self._finishing = False
        self._wake = asyncio.Event()

    @classmethod
    def from_settings(cls, settings: Settings, webhooks: Webhooks) -> WebhookSender:
        return cls(webhooks, timeout=settings.webhook_timeout, retry_delays=settings.webhook_retry_delays,
                   allow_loopback=settings.webhook_allow_loopback)

    @property
    def lease_seconds(self) -> float:
        """How long a claim holds: a round's sends run at once, each cut off at ``timeout``; twice that, and a second."""
        return self.timeout * 2 + 1

    def retry_delay(self, attempts: int) -> float | None:
        """Seconds before the next try after ``attempts`` failed ones; None when none is left."""
        return self.retry_delays[attempts - 1] if attempts <= len(self.retry_delays) else None

    async def run(self) -> None:
        """Send due deliveries until cancelled, or until a round after ``finish`` finds nothing due.

        A database error waits for the next round.
        """
        async with self._client() as client:
            while True:
                try:
                    sent = await self._send_due(client)
                except Exception as error:  # the outbox stays; the next round tries again
                    log.warning("webhook deliveries could not be claimed: %s", describe(error))
                    sent = 0
                if sent:
                    continue
                if self._finishing:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval if sent == 0 else self.idle_interval)

    async def finish(self, loop: asyncio.Task[None]) -> None:
        """End ``loop`` (this sender's ``run``) once what is due now is sent, waiting at most
        ``FINAL_ROUND_SECONDS`` (and ``timeout``): a delivery cut short then is sent again later,
        by the next worker, once its lease runs out."""
        self._finishing = True
        self._wake.set()
        await asyncio.wait({loop}, timeout=min(self.timeout, FINAL_ROUND_SECONDS))
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)

    async def send_due(self) -> int | None:
        """One round: claim the due deliveries and send them; how many were tried (None: no endpoint is enabled)."""
        async with self._client() as client:
            return await self._send_due(client)

    async def _send_due(self, client: httpx2.AsyncClient) -> int | None:
        due = await self.webhooks.due_now()  # a read: no write lock taken while nothing is due
        if not due:
            return None if due is None else 0
        claimed = await self.webhooks.claim_due(limit=self.batch_size, lease_seconds=self.lease_seconds)
        await asyncio.gather(*(self._deliver(client, delivery) for delivery in claimed))
        return len(claimed)

    async def _deliver(self, client: httpx2.AsyncClient, delivery: ClaimedDelivery) -> None:
        status_code, error = await self._post(client, delivery)
        try:
            if status_code is not None and 200 <= status_code < 300:
                await self.webhooks.delivered(delivery, status_code)
            elif status_code == 410:
                await self.webhooks.gone(delivery, status_code)
                log.warning("webhook endpoint %s answered 410 Gone: it is disabled", delivery.endpoint_id)
            else:
                delay = self.retry_delay(delivery.attempts)
                await self.webhooks.try_again(delivery, status_code=status_code, error=error or "", delay=delay)
                log.info("webhook %s to endpoint %s, attempt %s: %s; %s", delivery.event_type, delivery.endpoint_id,
                         delivery.attempts, error, f"again in {delay:g} s" if delay is not None else "failed for good")
        except Exception as failure:  # the lease runs out and the delivery is tried again
            log.warning("the result of webhook delivery %s could not be recorded: %s", delivery.id, describe(failure))

    async def _post(self, client: httpx2.AsyncClient, delivery: ClaimedDelivery) -> tuple[int | None, str | None]:
        """The receiver's status code (None when none came) and, unless 2xx, what went wrong in one line."""
        headers = signed_headers(delivery.secret, delivery.message_id, int(self._clock()), delivery.payload)
        headers["user-agent"] = USER_AGENT
        try:
            async with asyncio.timeout(self.timeout):
                # Streamed and never read: a receiver's body is not ours to download.
                async with client.stream("POST", delivery.url, content=delivery.payload.encode(),
                                         headers=headers) as response:
                    code = response.status_code
        except TimeoutError:
            return None, f"no answer within {self.timeout:g} s"
        except DownloadRefusedError as error:
            return None, str(error)
        except httpx2.HTTPError as error:
            if isinstance(error.__context__, DownloadRefusedError):
                return None, str(error.__context__)
            return None, f"{type(error).__name__}: {_first_line(error)}"
        if 200 <= code < 300:
            return code, None
        if 300 <= code < 400:
            return code, f"HTTP {code}: redirects are not followed"
        return code, f"HTTP {code}"

    @contextlib.asynccontextmanager
    async def _client(self) -> AsyncIterator[httpx2.AsyncClient]:
        backend = PublicOnlyBackend(allow_loopback=self.allow_loopback, resolver=self._resolver)
        transport = httpx2.AsyncHTTPTransport(retries=0)
        # As for image downloads (providers/download.py): httpx2 takes no network backend argument.
        transport._pool = httpcore2.AsyncConnectionPool(network_backend=backend, retries=0)
        client = httpx2.AsyncClient(transport=transport, follow_redirects=False, trust_env=False,
                                    timeout=httpx2.Timeout(self.timeout, connect=min(self.timeout, 5.0)))
        try:
            yield client
        finally:
            await client.aclose()


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0][:300]
