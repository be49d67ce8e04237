"""The worker through outages that are no image's fault: a full disk, a database out of reach.

A full disk stops a run gracefully (jobs in flight may finish; what is given back is not counted
against the job) or, in a worker that must keep serving (``resume_after``), pauses claiming and
carries on. A job whose database connection is lost every time still ends, and says why. A paid
image whose ledger row could not be closed is kept, and the row is closed once the database is back.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from blogimg.config import Settings
from blogimg.db.jobs import PostsToEnqueue
from blogimg.db.tables import GeneratedImage, GenerationAttempt
from blogimg.domain import Outcome, Status
from blogimg.errors import DatabaseUnavailableError, StorageFullError
from blogimg.pipeline.batches import run_batch
from blogimg.pipeline.generate import read_posts
from blogimg.pipeline.runtime import open_runtime
from blogimg.storage import MemoryStorage
from blogimg.storage.base import StoredObject
from blogimg.testing import FakeProvider
from tests.support import on_both_engines, registry_with, write_posts

pytestmark = on_both_engines


class FullDisk(MemoryStorage):
    """Storage whose disk is full for its first ``full`` puts, then has room again."""

    def __init__(self, full: int = 1) -> None:
        super().__init__()
        self.full = full

    async def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        if self.full > 0:
            self.full -= 1
            raise StorageFullError("the disk of the storage folder /images is full (No space left on device)")
        return await super().put(key, data, content_type)


class AdminShutdown(Exception):
    sqlstate = "57P01"


def lost_connection() -> OperationalError:
    return OperationalError("SELECT 1", {}, AdminShutdown("terminating connection due to administrator command"))


async def rows(runtime: Any) -> list[GeneratedImage]:
    async with runtime.database.sessions() as session:
        return list(await session.scalars(select(GeneratedImage).order_by(GeneratedImage.id)))


async def test_a_full_disk_stops_the_run_but_lets_a_paid_call_in_flight_finish(
        tmp_path: Path, settings: Settings) -> None:
    # Two images at once: the first one's files meet the full disk while the second's call is
    # still out at the provider (and paid for). That call's image is made, not thrown away.
    provider = FakeProvider("fake", latency=lambda number: 0.0 if number == 1 else 0.5)
    posts = read_posts([write_posts(tmp_path / "posts", 2, markers=0)], settings)
    async with open_runtime(settings, providers=["fake"], registry=registry_with(provider),
                            storage=FullDisk()) as runtime:
        worker = runtime.worker(concurrency=2)
        with pytest.raises(StorageFullError):
            await run_batch(runtime.database, PostsToEnqueue(posts), worker=worker)
        images = await rows(runtime)
    assert len(provider.calls) == 2
    assert sorted((image.status, image.attempts) for image in images) == [(Status.QUEUED, 0), (Status.SUCCEEDED, 1)]


async def test_jobs_a_full_disk_run_gives_back_at_its_end_are_not_counted(tmp_path: Path, settings: Settings) -> None:
    provider = FakeProvider("fake", latency=lambda number: 0.0 if number == 1 else 5.0)
    posts = read_posts([write_posts(tmp_path / "posts", 2, markers=0)], settings)
    async with open_runtime(settings.model_copy(update={"shutdown_grace": 0.0}), providers=["fake"],
                            registry=registry_with(provider), storage=FullDisk()) as runtime:
        worker = runtime.worker(concurrency=2)
        # Polled at once: the run stops while the first job is still giving itself back (as a loaded
        # machine once had it), which must not have the stop give it back a second time.
        worker.poll_interval = 0.001
        with pytest.raises(StorageFullError):
            await run_batch(runtime.database, PostsToEnqueue(posts), worker=worker)
        images = await rows(runtime)
    # The second job was cut off at once (no grace): back to the queue, its claim not counted.
    assert [(image.status, image.attempts) for image in images] == [(Status.QUEUED, 0), (Status.QUEUED, 0)]
    assert worker.released == 1


async def test_a_worker_that_resumes_pauses_on_a_full_disk_says_so_and_carries_on(
        tmp_path: Path, settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    provider = FakeProvider("fake")
    posts = read_posts([write_posts(tmp_path / "posts", 2, markers=0)], settings)
    async with open_runtime(settings, providers=["fake"], registry=registry_with(provider),
                            storage=FullDisk()) as runtime:
        await run_batch(runtime.database, PostsToEnqueue(posts))  # queued only
        worker = runtime.worker(concurrency=1)
        worker.poll_interval, worker.resume_after = 0.02, 0.3
        with caplog.at_level(logging.INFO, logger="blogimg.pipeline.worker"):
            task = asyncio.create_task(worker.run())
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while not all(image.status == Status.SUCCEEDED for image in await rows(runtime)):
                assert not task.done(), f"the worker ended: {task.exception()!r}"
                assert loop.time() < deadline, [image.status for image in await rows(runtime)]
                await asyncio.sleep(0.02)
            errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
            worker.stop()
            await task
        images = await rows(runtime)
    assert len(errors) == 1 and "is full" in errors[0], errors
    assert [(image.status, image.attempts) for image in images] == [(Status.SUCCEEDED, 1)] * 2


async def test_a_paused_worker_tries_one_job_at_a_time_and_waits_longer_each_time(
        tmp_path: Path, settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    # Each try is a paid call whose image the full disk cannot take: after the first pause, one
    # job at a time finds out whether there is room again, and the pauses grow.
    provider, storage = FakeProvider("fake"), FullDisk(full=10**6)
    posts = read_posts([write_posts(tmp_path / "posts", 3, markers=0)], settings)
    async with open_runtime(settings, providers=["fake"], registry=registry_with(provider), storage=storage) as runtime:
        await run_batch(runtime.database, PostsToEnqueue(posts))
        worker = runtime.worker(concurrency=3)
        worker.poll_interval, worker.resume_after = 0.01, 0.1
        with caplog.at_level(logging.ERROR, logger="blogimg.pipeline.worker"):
            task = asyncio.create_task(worker.run())
            while len(pauses := [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]) < 4:
                assert not task.done(), f"the worker ended: {task.exception()!r}"
                await asyncio.sleep(0.01)
            calls = len(provider.calls)
            storage.full = 0  # space is freed
            while not all(image.status == Status.SUCCEEDED for image in await rows(runtime)):
                assert not task.done(), f"the worker ended: {task.exception()!r}"
                await asyncio.sleep(0.02)
            worker.stop()
            await task
    # Up to three at first (on a slow database the first pause may come before all three have
    # called), then one per pause: trying every job each time would be 3 + 3 × 3 by now.
    assert 1 + 3 <= calls <= 3 + 4, calls
    assert [pause.rsplit(" for ", 1)[1] for pause in pauses[:4]] == ["0.1 s", "0.2 s", "0.4 s", "0.8 s"], pauses


async def test_a_job_that_always_loses_its_connection_ends_and_says_why(
        tmp_path: Path, settings: Settings, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = FakeProvider("fake")
    posts = read_posts([write_posts(tmp_path / "posts", 1, markers=0)], settings)
    async with open_runtime(settings.model_copy(update={"max_job_attempts": 2}), providers=["fake"],
                            registry=registry_with(provider), storage=MemoryStorage()) as runtime:
        async def always_lost(job: object) -> None:
            raise lost_connection()

        monkeypatch.setattr(runtime.database.queue, "job_context", always_lost)
        worker = runtime.worker()
        worker.poll_interval = 0.01
        with caplog.at_level(logging.WARNING, logger="blogimg.pipeline.worker"):
            await asyncio.wait_for(run_batch(runtime.database, PostsToEnqueue(posts), worker=worker), 30)
        images = await rows(runtime)
    assert [(image.status, image.error_code) for image in images] == [(Status.FAILED, "max_attempts")]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings and all("AdminShutdown: terminating connection" in w for w in warnings), warnings[:3]


async def test_a_paid_image_is_kept_when_its_ledger_row_cannot_be_closed(
        tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = FakeProvider("fake", cost_usd=0.04)
    posts = read_posts([write_posts(tmp_path / "posts", 1, markers=0)], settings)
    async with open_runtime(settings, providers=["fake"], registry=registry_with(provider),
                            storage=MemoryStorage()) as runtime:
        ledger = runtime.database.ledger
        close = ledger.close_attempt
        failures = [DatabaseUnavailableError("lost the connection to the database 11 times in a row")]

        async def close_once_unreachable(attempt_id: int, record: Any) -> None:
            if failures:
                raise failures.pop()
            await close(attempt_id, record)

        monkeypatch.setattr(ledger, "close_attempt", close_once_unreachable)
        summary = await run_batch(runtime.database, PostsToEnqueue(posts), worker=runtime.worker())
        async with runtime.database.sessions() as session:
            calls = list(await session.execute(select(GenerationAttempt.outcome, GenerationAttempt.cost_usd)))
    assert (summary.succeeded, summary.failed, len(provider.calls)) == (1, 0, 1)
    # Closed once the database answered again (after the image was saved): not left pending.
    assert [tuple(call) for call in calls] == [(Outcome.OK, 0.04)]
