"""Many worker processes on one queue: SIGKILL one, SIGSTOP another past its lease, lose nothing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from blogimg.config import Settings
from blogimg.db.jobs import PostsToEnqueue
from blogimg.db.tables import GeneratedImage, GenerationAttempt, ImageVariant
from blogimg.pipeline.generate import read_posts
from tests.support import REPOSITORY_ROOT, write_posts

LEASE_SECONDS = 2.0


def worker_environment(settings: Settings) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BLOGIMG_")}
    environment.update(
        PYTHONPATH=str(REPOSITORY_ROOT), BLOGIMG_DATABASE_URL=settings.database_url,
        BLOGIMG_STORAGE_PATH=str(settings.storage_path), BLOGIMG_LEASE_SECONDS=str(LEASE_SECONDS),
        BLOGIMG_AVIF_EFFORT="0", BLOGIMG_VARIANT_WIDTHS="48", BLOGIMG_VARIANT_FORMATS="webp",
        BLOGIMG_TEST_FAKE_LATENCY="0.1", BLOGIMG_SHUTDOWN_GRACE="10", BLOGIMG_BREAKER_THRESHOLD="0",
        COLUMNS="200",
    )
    return environment


def start_worker(settings: Settings, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "blogimg", "worker", "--providers", "tests.fakes.slow_provider:SlowProvider",
         "--concurrency", "4"],
        env=worker_environment(settings), stdout=log.open("w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )


async def observe(database, statement) -> list:
    """The rows of a read, taken so that a worker stopped mid-transaction cannot block it.

    On SQLite every transaction of the engine starts with BEGIN IMMEDIATE (the write lock), so a
    SIGSTOPped worker holding that lock would stall the test's own looking for the busy timeout
    and fail it; a plain connection reads the WAL snapshot without waiting.
    """
    if database.engine.dialect.name != "sqlite":
        async with database.sessions() as session:
            return list((await session.execute(statement)).all())
    sql = str(statement.compile(dialect=database.engine.dialect, compile_kwargs={"literal_binds": True}))
    path = database.engine.url.database

    def read() -> list:
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as connection:
            return connection.execute(sql).fetchall()

    return await asyncio.to_thread(read)


async def succeeded(database) -> int:
    [(count,)] = await observe(database, select(func.count()).select_from(GeneratedImage).where(
        GeneratedImage.status == "succeeded"))
    return count


async def wait_until(database, count: int, workers: list[subprocess.Popen], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await succeeded(database) >= count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {count} images succeeded within {timeout} s")


async def held_leases(database, worker: subprocess.Popen) -> dict[int, str]:
    return dict(await observe(database, select(GeneratedImage.id, GeneratedImage.lease_token).where(
        GeneratedImage.status == "running", GeneratedImage.lease_owner.like(f"%:{worker.pid}"))))


async def stop_until_taken_over(database, worker: subprocess.Popen, tries: int = 5) -> None:
    """SIGSTOP the worker while it holds jobs, until another worker has taken at least one of them.

    A fixed sleep is not enough: the worker may be stopped holding no job, or (on SQLite) inside
    a write transaction that keeps everyone else from claiming until it wakes. Then it is woken
    and stopped again a moment later.
    """
    for _ in range(tries):
        deadline = time.monotonic() + 10
        while not await held_leases(database, worker) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        worker.send_signal(signal.SIGSTOP)
        await asyncio.sleep(0.2)  # a commit sent just before the stop becomes visible first
        held = await held_leases(database, worker)
        deadline = time.monotonic() + LEASE_SECONDS * 4
        while held and time.monotonic() < deadline:
            tokens = dict(await observe(database, select(GeneratedImage.id, GeneratedImage.lease_token)
                                        .where(GeneratedImage.id.in_(list(held)))))
            if any(tokens[image_id] != token for image_id, token in held.items()):
                return  # another worker holds (or has finished) a job the stopped one still thinks is its own
            await asyncio.sleep(0.1)
        worker.send_signal(signal.SIGCONT)
        await asyncio.sleep(0.3)
    raise AssertionError(f"no worker took over the stopped worker's jobs in {tries} tries")


@pytest.mark.parametrize(("database_url", "processes", "posts"),
                         [("postgresql", 4, 100), ("sqlite", 2, 100)], indirect=["database_url"])
async def test_workers_drain_the_queue_exactly_once_through_kill_and_stop(
        tmp_path: Path, settings: Settings, database, processes: int, posts: int) -> None:
    # Enqueue: each post wants a cover and three inline images.
    for post in read_posts([write_posts(tmp_path / "posts", posts, markers=3)], settings):
        await database.queue.enqueue(PostsToEnqueue([post]))
    total = posts * 4
    logs = [tmp_path / f"worker-{n}.log" for n in range(processes)]
    workers = [start_worker(settings, log) for log in logs]
    killed, stopped = workers[0], workers[1]
    try:
        # Stop one first, so the others (with two processes: the one about to be killed) take
        # over its expired leases; then kill one, whose jobs the survivors recover.
        await wait_until(database, total // 10, workers)
        await stop_until_taken_over(database, stopped)
        stopped.send_signal(signal.SIGCONT)  # it wakes holding stale leases: fencing must refuse it
        await wait_until(database, total // 2, workers)
        killed.send_signal(signal.SIGKILL)
        await wait_until(database, total, workers)
        for worker in workers[1:]:
            worker.send_signal(signal.SIGTERM)
        for worker in workers[1:]:
            assert worker.wait(timeout=60) == 0, logs[workers.index(worker)].read_text()[-3000:]
    finally:
        for worker in workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
    assert killed.returncode == -signal.SIGKILL

    async with database.sessions() as session:
        statuses = dict((await session.execute(
            select(GeneratedImage.status, func.count()).group_by(GeneratedImage.status))).all())
        assert statuses == {"succeeded": total}, statuses
        variants = (await session.execute(
            select(ImageVariant.image_id, ImageVariant.format, ImageVariant.width, func.count())
            .group_by(ImageVariant.image_id, ImageVariant.format, ImageVariant.width))).all()
        assert {count for *_, count in variants} == {1} and len({v[0] for v in variants}) == total
        keys = set(await session.scalars(select(ImageVariant.storage_key)))
        keys |= set(await session.scalars(select(GeneratedImage.storage_key)))
        claims = list(await session.scalars(select(GeneratedImage.attempts)))
        owners = (await session.execute(
            select(GenerationAttempt.image_id, func.count(func.distinct(GenerationAttempt.lease_owner)))
            .group_by(GenerationAttempt.image_id))).all()
    missing = [key for key in keys if not (settings.storage_path / key).is_file()]
    assert missing == []
    # The ledger shows the re-claims: jobs claimed more than once, called by more than one worker.
    assert max(claims) >= 2 and any(count >= 2 for _, count in owners)
    # The stopped worker woke up holding leases that had passed to others, and was fenced out.
    woke = logs[1].read_text()
    assert "lost the lease" in woke or "finished after its lease was lost" in woke, woke[-2000:]
    assert all("stopped after" in log.read_text() for log in logs[1:])  # SIGTERM: a clean exit


async def test_sigterm_gives_unfinished_jobs_back_to_the_queue(tmp_path: Path, settings: Settings, database) -> None:
    for post in read_posts([write_posts(tmp_path / "posts", 1, markers=1)], settings):
        await database.queue.enqueue(PostsToEnqueue([post]))
    environment = worker_environment(settings) | {"BLOGIMG_TEST_FAKE_LATENCY": "60", "BLOGIMG_SHUTDOWN_GRACE": "0.5"}
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "blogimg", "worker", "--providers", "tests.fakes.slow_provider:SlowProvider"],
        env=environment, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            async with database.sessions() as session:
                running = await session.scalar(select(func.count()).select_from(GeneratedImage)
                                               .where(GeneratedImage.status == "running"))
            if running == 2:
                break
            await asyncio.sleep(0.1)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
    async with database.sessions() as session:
        rows = (await session.execute(select(GeneratedImage.status, GeneratedImage.lease_token))).all()
    assert rows == [("queued", None), ("queued", None)], log.read_text()
    assert "gave 2 back to the queue" in log.read_text()
