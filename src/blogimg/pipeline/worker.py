"""The worker: claim → generate → process → store → commit, with heartbeats and a graceful stop.

Order matters for "nothing lost": every provider call is in the ledger before its result is
used; files are stored (content-addressed, so repeating is harmless) before the row says
``succeeded``; the row changes only under the lease token. A crash anywhere leaves a ``running``
row whose lease expires (or whose owner is seen dead), and the next claim redoes the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from blogimg import logs
from blogimg.db.failures import connection_lost, describe
from blogimg.db.jobs import ClaimedJob
from blogimg.db.leases import lease_owner_name
from blogimg.db.ledger import Ledger
from blogimg.db.queue import JobQueue
from blogimg.domain import (
    AttemptRecord,
    EventKind,
    ProgressEvent,
)
from blogimg.errors import (
    BlogimgError,
    DatabaseUnavailableError,
    ImageRejectedError,
    JobGoneError,
    OutOfSpaceError,
    StorageError,
)
from blogimg.imaging.labels import ProvenanceLabel
from blogimg.imaging.process import ImagingOptions, process_image
from blogimg.pipeline import job_logs
from blogimg.pipeline.budget import Budget
from blogimg.pipeline.captioning import caption_image
from blogimg.pipeline.chain import CaptionChain, ChainSuccess, ProviderChain
from blogimg.pipeline.circuit_reports import report_loop
from blogimg.pipeline.job_ledger import JobLedger
from blogimg.pipeline.job_results import failure_code, finished_image, image_request
from blogimg.pipeline.provenance import Provenance
from blogimg.pipeline.webhook_sender import WebhookSender
from blogimg.storage.base import Storage

log = logging.getLogger(__name__)
EventCallback = Callable[[ProgressEvent], None]
#: Times one worker gives a job back uncounted for a lost database connection; then its claims
#: count, so a job that loses its connection every time still ends (``max_attempts``).
UNCOUNTED_GIVE_BACKS = 3


class Worker:
    """Runs up to ``concurrency`` jobs at a time from the queue (optionally one batch only)."""

    def __init__(
        self,
        queue: JobQueue,
        ledger: Ledger,
        storage: Storage,
        chain: ProviderChain,
        *,
        imaging: ImagingOptions = ImagingOptions(),
        concurrency: int = 3,
        lease_seconds: float = 60.0,
        max_job_attempts: int = 5,
        quality: str = "high",
        poll_interval: float = 0.25,
        on_event: EventCallback | None = None,
        owner: str | None = None,
        budget: Budget | None = None,
        captions: CaptionChain | None = None,
        alt_text_max_chars: int = 125,
        shutdown_grace: float = 30.0,
    ) -> None:
        self.queue = queue
        self.ledger = ledger
        self.storage = storage
        self.chain = chain
        self.imaging = imaging
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.max_job_attempts = max_job_attempts
        self.quality = quality
        self.poll_interval = poll_interval
        self.owner = owner or lease_owner_name()
        self.budget = budget if budget is not None and budget.enabled else None
        self.captions = captions
        self.alt_text_max_chars = alt_text_max_chars
        self._on_event = on_event
        self._stopping = asyncio.Event()
        self._hurry = asyncio.Event()
        self.shutdown_grace = shutdown_grace
        self._held: dict[int, ClaimedJob] = {}
        self._next_maintenance = 0.0
        self.done = 0
        self.released = 0  #: jobs given back to the queue unfinished at shutdown
        self.stopped_by: OutOfSpaceError | None = None  #: the full disk that stopped the run, raised by run()
        #: Seconds to stop claiming after a full disk (or a database out of reach), then carry on; None
        #: ends the run instead (``generate``, ``worker``). A server's embedded worker must carry on.
        self.resume_after: float | None = None
        self._paused_until = 0.0
        self._pauses = 0  #: pauses since an image last succeeded; while any, one job at a time
        self._given_back: dict[int, int] = {}  #: image id → uncounted give-backs for a lost connection
        self._giving_back: dict[int, asyncio.Task] = {}  #: image id → its job's task, giving it back itself
        #: The alert rules' loop (pipeline/alerting.py), run beside the jobs; the runtime sets it.
        self.alert_loop: Callable[[], Coroutine[Any, Any, None]] | None = None
        #: The webhook outbox's sender (pipeline/webhook_sender.py); the runtime sets it.
        self.webhook_sender: WebhookSender | None = None
        #: C2PA: keeps a signed original, signs derivatives (pipeline/provenance.py); the runtime sets it.
        self.provenance = Provenance()

    def stop(self, *, immediately: bool = False) -> None:
        """Stop claiming. Jobs in flight get ``shutdown_grace`` seconds to finish (none when
        ``immediately``); whatever is still running then is cancelled and given back to the queue."""
        self._stopping.set()
        if immediately:
            self._hurry.set()

    async def run(self, *, batch_id: int | None = None) -> None:
        """Work until stopped, or — with ``batch_id`` — until that batch has nothing left to do."""
        tasks: set[asyncio.Task] = set()
        beat = asyncio.create_task(self._heartbeats(), name="blogimg-heartbeat")
        alerts = asyncio.create_task(self.alert_loop(), name="blogimg-alerts") if self.alert_loop else None
        webhooks = asyncio.create_task(self.webhook_sender.run(), name="blogimg-webhooks") if self.webhook_sender else None
        circuits = asyncio.create_task(report_loop(self.queue.engine, self.owner, self.chain), name="blogimg-circuits")
        try:
            while not self._stopping.is_set():
                claimed: list[ClaimedJob] = []
                # After a pause, one job tries whether the outage is over: not a paid call per slot.
                free = (1 if self._pauses else self.concurrency) - len(tasks)
                if free > 0 and time.monotonic() >= self._paused_until:
                    try:
                        await self._maintain_queue()
                        claimed = await self.queue.claim(owner=self.owner, limit=free,
                                                         lease_seconds=self.lease_seconds, batch_id=batch_id)
                    except (OutOfSpaceError, DatabaseUnavailableError) as error:
                        if self.resume_after is None and not isinstance(error, OutOfSpaceError):
                            raise
                        self._halt(error)
                for job in claimed:
                    self._held[job.image_id] = job
                    tasks.add(asyncio.create_task(self._run_job(job), name=f"blogimg-job-{job.image_id}"))
                if not tasks and not claimed and batch_id is not None:
                    if not await self.queue.unfinished(batch_id):
                        if self.webhook_sender and webhooks:  # a one-shot run's last events go now
                            await self.webhook_sender.finish(webhooks)
                        return
                if tasks:
                    finished, tasks = await asyncio.wait(
                        tasks, timeout=self.poll_interval, return_when=asyncio.FIRST_COMPLETED)
                    for task in finished:
                        task.result()  # _run_job handles its own errors; surface bugs loudly
                elif not claimed:
                    await self._idle()
            await self._drain(tasks)
            if self.stopped_by is not None:
                raise self.stopped_by
        finally:
            # /metrics stops counting this worker once its last circuit report ages out; a webhook cut
            # short is sent once its lease runs out. Awaited: none is on the database when it closes.
            helpers = [task for task in (beat, circuits, alerts, webhooks) if task is not None]
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            for task in tasks:
                task.cancel()

    def _halt(self, error: OutOfSpaceError | DatabaseUnavailableError) -> None:
        """No new job while a disk is full or the database out of reach: no image's fault, and
        starting more only spends money on images that cannot be saved. Jobs in flight go on."""
        now = time.monotonic()
        if self.resume_after is not None:
            if now >= self._paused_until:  # one pause for the jobs in flight that fail alike; longer each time
                self._pauses += 1
                pause = self.resume_after * 2 ** min(self._pauses - 1, 4)
                log.error("%s; no new image is started for %g s", describe(error), pause)
                self._paused_until = now + pause
        elif isinstance(error, OutOfSpaceError) and self.stopped_by is None:
            # Said by run(), which raises it (one line from the CLI) once jobs in flight are done.
            log.info("stopping: %s", error)
            self.stopped_by = error
            self.stop()

    async def _idle(self) -> None:
        # Sleep between polls, but wake at once when told to stop.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), self.poll_interval)

    async def _drain(self, tasks: set[asyncio.Task]) -> None:
        """Let jobs in flight finish within the grace period; give the rest back to the queue."""
        if not tasks:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.shutdown_grace
        hurry = asyncio.create_task(self._hurry.wait())
        pending = {task for task in tasks if not task.done()}
        while pending and not self._hurry.is_set() and loop.time() < deadline:
            await asyncio.wait({*pending, hurry}, timeout=deadline - loop.time(),
                               return_when=asyncio.FIRST_COMPLETED)
            pending = {task for task in pending if not task.done()}
        hurry.cancel()
        unfinished = [task for task in tasks if not task.done()]
        # A job already giving itself back (its own full disk, a lost connection) finishes that:
        # cancelled halfway, its release could roll back and be done again below, counted twice.
        giving_back = set(self._giving_back.values())
        held = [job for job in self._held.values()  # snapshot before cancellation forgets them
                if job.image_id not in self._giving_back]
        for task in unfinished:
            if task not in giving_back:
                task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        for job in held:
            # Fenced: a job that did finish meanwhile no longer carries this token; nothing changes.
            # Cut short by a full disk, not by its own fault: the claim is not counted.
            if await self._release(job, counts=self.stopped_by is None):
                self.released += 1
                log.info("gave image %s back to the queue", job.image_id)

    async def _maintain_queue(self) -> None:
        # Recovering abandoned jobs is housekeeping, not per-claim work: at most once a second,
        # and at start so a re-run after a crash picks up the dead run's jobs at once.
        now = time.monotonic()
        if now < self._next_maintenance:
            return
        self._next_maintenance = now + 1.0
        await self.queue.expire_dead_local_leases()
        await self.queue.fail_exhausted(self.max_job_attempts)

    async def _heartbeats(self) -> None:
        interval = max(0.2, self.lease_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            jobs = list(self._held.values())
            if not jobs:
                continue
            try:
                held = await self.queue.heartbeat(jobs, self.lease_seconds)
            except Exception as error:  # the next beat retries; the lease outlives a few misses
                log.warning("heartbeat failed: %s", describe(error))
                continue
            for job in jobs:
                # A job that finished while the beat was in flight is not lost, just done.
                if job.image_id not in held and self._held.get(job.image_id) is job:
                    log.warning("lost the lease on image %s; another worker has it", job.image_id)

    async def _run_job(self, job: ClaimedJob) -> None:
        job_logs.job_started(job.image_id)  # this task's log lines name the image
        try:
            await self._make_image(job)
        except JobGoneError:
            log.info("image %s was deleted before it was made", job.image_id)
        except OutOfSpaceError as error:
            # No fault of the image, and no retry soon frees a disk: the run stops or pauses (see
            # _halt), and the job goes back to the queue for when space is freed.
            self._halt(error)
            await self._give_back(job, error)
        except DatabaseUnavailableError as error:  # lost through every retry: not the image's fault either
            await self._give_back(job, error)
        except BlogimgError as error:
            # A failure we know by name (bad stored input, storage, configuration) is the image's
            # error code, not "internal": that code is kept for bugs.
            await self._fail(job, failure_code(error), str(error))
        except Exception as error:
            if connection_lost(error):  # a database call that was not retried lost its connection
                await self._give_back(job, error)
                return
            # Unexpected: record it on the row if we still can; otherwise the lease expires and
            # the job is claimed again, so nothing is lost either way. describe(): one line, and
            # never a SQL statement or its values on the row.
            log.error("image %s failed unexpectedly: %s", job.image_id, describe(error),
                      exc_info=log.isEnabledFor(logging.DEBUG))
            try:
                await self.queue.fail(job, "internal", describe(error))
            except Exception as failure:
                log.warning("could not record the failure of image %s: %s", job.image_id, describe(failure))
            self._finish(job, EventKind.FAILED, f"internal: {describe(error)}")
        finally:
            self._held.pop(job.image_id, None)

    async def _make_image(self, job: ClaimedJob) -> None:
        context = await self.queue.job_context(job)
        logs.bind(batch_id=context.batch_id)
        self._emit(ProgressEvent(EventKind.STARTED, image_id=job.image_id, done=self.done))

        async def report(attempt: AttemptRecord) -> None:
            job_logs.attempt_ended(attempt)
            self._emit(ProgressEvent(EventKind.ATTEMPT, image_id=job.image_id, done=self.done,
                                     attempt=attempt))

        started = time.monotonic()
        ledger = JobLedger(self.ledger, job.image_id, self.owner, self.budget)
        result = await self.chain.generate(image_request(context, self.quality), on_attempt=report, ledger=ledger,
                                           only=context.options.get("providers"))
        if not isinstance(result, ChainSuccess):
            # Rate limits alone are no reason to fail an image: back to the queue while claims are
            # left (the chain's pacing holds the next try back); the last claim fails it rate_limited.
            if result.retry_later and job.attempts < self.max_job_attempts and await self.queue.release(job):
                log.info("image %s waits in the queue: %s", job.image_id, result.error)
                return
            await self._fail(job, result.code, result.error)
            return
        provider, image = result.provider, result.result
        generated_ms = round((time.monotonic() - started) * 1000)
        try:
            # The provider may say where its subject is (the card knows where it set the title).
            processed = await asyncio.to_thread(process_image, image.data, self.imaging, image.focus,
                                                ProvenanceLabel(provider=provider, model=image.model))
        except ImageRejectedError as error:
            await self._fail(job, "image_rejected", str(error))
            return
        made = await asyncio.to_thread(self.provenance.keep, image.data, processed)
        processed = made.processed
        processing_ms = round((time.monotonic() - started) * 1000) - generated_ms
        try:
            await asyncio.gather(*(self.storage.put(key, data, content_type) for key, data, content_type in made.files))
        except OutOfSpaceError:
            raise  # not this image's failure: see _run_job
        except StorageError as error:
            await self._fail(job, "storage", str(error))
            return
        caption = await caption_image(self.captions, context, processed, ledger, len(result.attempts) + 1,
                                      self.alt_text_max_chars)
        finished = finished_image(context, provider, image, result.attempts, processed, generated_ms,
                                  processing_ms, caption, self.alt_text_max_chars, made)
        if await self.queue.complete(job, finished):
            self._finish(job, EventKind.SUCCEEDED, provider)
        else:
            log.warning("image %s finished after its lease was lost; the new holder's result stands",
                        job.image_id)
        await ledger.settle()

    async def _give_back(self, job: ClaimedJob, why: Exception) -> None:
        """Back to the queue, the claim not counted: a full disk never counts, a lost connection
        only after UNCOUNTED_GIVE_BACKS times."""
        counts = False
        if not isinstance(why, OutOfSpaceError):
            times = self._given_back[job.image_id] = self._given_back.get(job.image_id, 0) + 1
            counts = times > UNCOUNTED_GIVE_BACKS
            log.warning("image %s goes back to the queue%s: %s", job.image_id,
                        f" (lost its connection {times} times: the claim counts)" if counts else "", describe(why))
        task = asyncio.current_task()
        if task is not None:
            self._giving_back[job.image_id] = task
        try:
            await self._release(job, counts=counts)
        finally:
            self._giving_back.pop(job.image_id, None)

    async def _release(self, job: ClaimedJob, *, counts: bool) -> bool:
        """Whether the job went back to the queue; when even that fails, its lease runs out."""
        try:
            return await self.queue.release(job, counts=counts)
        except Exception as error:  # a full database cannot take even this: said once, by _halt or run()
            log.log(logging.INFO if isinstance(error, OutOfSpaceError) else logging.WARNING,
                    "could not give image %s back to the queue: %s", job.image_id, describe(error))
            return False

    async def _fail(self, job: ClaimedJob, code: str, message: str) -> None:
        if await self.queue.fail(job, code, message):
            self._finish(job, EventKind.FAILED, f"{code}: {message}")

    def _finish(self, job: ClaimedJob, kind: EventKind, detail: str) -> None:
        self._given_back.pop(job.image_id, None)
        if kind is EventKind.SUCCEEDED:
            self._pauses = 0
        self.done += 1
        job_logs.job_ended(kind is EventKind.SUCCEEDED, detail)
        self._emit(ProgressEvent(kind, image_id=job.image_id, done=self.done, detail=detail))

    def _emit(self, event: ProgressEvent) -> None:
        if self._on_event is not None:
            self._on_event(event)

