"""Webhooks through crashes and races: a SIGKILLed worker loses no delivery, and batch.done is said exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import standardwebhooks
from sqlalchemy import event, func, select, update

from blogimg.config import Settings
from blogimg.db import webhooks
from blogimg.db.database import Database
from blogimg.db.jobs import PostsToEnqueue
from blogimg.db.tables import GeneratedImage, WebhookDelivery
from blogimg.db.webhooks import record_event
from blogimg.domain import Status
from blogimg.pipeline.generate import read_posts
from blogimg.pipeline.webhook_endpoints import configure_endpoints
from blogimg.pipeline.webhook_sender import WebhookSender
from blogimg.pipeline.webhook_signing import new_secret
from tests.fakes.webhook_receiver import HOLD, WebhookReceiver
from tests.support import REPOSITORY_ROOT, on_both_engines, write_posts

SECRET = new_secret()
TIMEOUT = 3.0  #: the sender's timeout: its lease is 2 × 3 + 1 = 7 s


def configured(settings: Settings, url: str) -> Settings:
    return settings.model_copy(update={"webhook_urls": [url], "webhook_secret": SECRET, "webhook_allow_loopback": True,
                                       "webhook_timeout": TIMEOUT, "webhook_retry_delays": [0.1] * 5})


async def rows(database: Database) -> list[WebhookDelivery]:
    async with database.sessions() as session:
        return list(await session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def start_worker(settings: Settings, log: Path) -> subprocess.Popen:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BLOGIMG_")}
    environment.update(
        PYTHONPATH=str(REPOSITORY_ROOT), BLOGIMG_DATABASE_URL=settings.database_url,
        BLOGIMG_STORAGE_PATH=str(settings.storage_path), BLOGIMG_WEBHOOK_URLS=settings.webhook_urls[0],
        BLOGIMG_WEBHOOK_SECRET=SECRET, BLOGIMG_WEBHOOK_ALLOW_LOOPBACK="true", BLOGIMG_WEBHOOK_TIMEOUT=str(TIMEOUT),
        BLOGIMG_WEBHOOK_RETRY_DELAYS="0.1,0.1,0.1", COLUMNS="200",
    )
    return subprocess.Popen([sys.executable, "-m", "blogimg", "worker", "--providers",
                             "tests.fakes.slow_provider:SlowProvider"],
                            env=environment, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


@on_both_engines
async def test_a_worker_killed_while_sending_loses_no_delivery(tmp_path: Path, settings: Settings,
                                                                database: Database) -> None:
    # The receiver holds the first three requests unanswered: the worker is killed mid-send.
    with WebhookReceiver([HOLD] * 3) as receiver:
        settings = configured(settings, receiver.url)
        await configure_endpoints(settings, database.webhooks)
        async with database.sessions.begin() as session:
            for number in range(3):
                await record_event(session, "batch.done", {"batch_id": number}, event_key=f"batch.done:{number}")
        worker = start_worker(settings, tmp_path / "worker.log")
        try:
            deadline = time.monotonic() + 60
            while len(receiver.received) < 3:
                assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the worker sent nothing"
                await asyncio.sleep(0.02)
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=30)
        finally:
            if worker.poll() is None:
                worker.kill()
        claimed = await rows(database)
        assert {(row.status, row.attempts) for row in claimed} == {("pending", 1)}
        assert all(row.lease_token for row in claimed)
        # Its leases still hold: nobody may send these now, or a receiver could get one twice at once.
        assert await database.webhooks.claim_due(limit=10, lease_seconds=30) == []
        receiver.release()
        # Another worker's sender takes them over once the leases run out.
        sender = WebhookSender.from_settings(settings, database.webhooks)
        sender.poll_interval = 0.1
        task = asyncio.create_task(sender.run())
        try:
            deadline = time.monotonic() + 60
            while await database.webhooks.pending_count():
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
        finally:
            task.cancel()
        assert sorted(receiver.accepted_ids()) == ["batch.done:0", "batch.done:1", "batch.done:2"]
        webhook = standardwebhooks.Webhook(SECRET)
        assert sorted(webhook.verify(body, headers)["data"]["batch_id"] for headers, body in receiver.accepted) == [0, 1, 2]
    assert {(row.status, row.attempts) for row in await rows(database)} == {("delivered", 2)}


async def _batch_of_two(settings: Settings, database: Database, tmp_path: Path, name: str) -> tuple[int, list[int]]:
    [post] = read_posts([write_posts(tmp_path / name, 1, markers=1, name=name)], settings)
    batch = await database.queue.enqueue(PostsToEnqueue([post]))
    assert batch.batch_id is not None and len(batch.image_ids) == 2
    return batch.batch_id, list(batch.image_ids)


async def _batch_done_rows(database: Database, batch_id: int) -> int:
    async with database.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(WebhookDelivery).where(
            WebhookDelivery.message_id == f"batch.done:{batch_id}")) or 0)


@on_both_engines
async def test_batch_done_once_when_the_last_two_images_finish_together(tmp_path: Path, settings: Settings,
                                                                        database: Database) -> None:
    await configure_endpoints(configured(settings, "http://127.0.0.1:9/hooks"), database.webhooks)
    batches = [await _batch_of_two(settings, database, tmp_path, f"race-{number}") for number in range(8)]
    for batch_id, _ in batches:
        jobs = await database.queue.claim(owner="test", limit=2, lease_seconds=60, batch_id=batch_id)
        assert len(jobs) == 2
        # Two workers fail the batch's last two images at the same moment (two connections on PostgreSQL).
        await asyncio.gather(*(database.queue.fail(job, "refused", "no") for job in jobs))
    for batch_id, _ in batches:
        assert await _batch_done_rows(database, batch_id) == 1


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_batch_done_waits_for_the_other_last_image_on_postgresql(tmp_path: Path, settings: Settings,
                                                                       database: Database) -> None:
    """The interleaving that loses batch.done without the batch lock, forced step by step.

    Each transaction finishes one of the two images; the first reports while the second's image
    still looks running to it. Without the lock, the second would report at once, seeing the
    first's image running too (not yet committed), and nobody would say batch.done.
    """
    # (SQLite's BEGIN IMMEDIATE lets one writer in at a time: this interleaving cannot happen there.)
    await configure_endpoints(configured(settings, "http://127.0.0.1:9/hooks"), database.webhooks)
    batch_id, image_ids = await _batch_of_two(settings, database, tmp_path, "forced")
    async with database.engine.connect() as first, database.engine.connect() as second:
        first_transaction, second_transaction = await first.begin(), await second.begin()
        for connection, image_id in ((first, image_ids[0]), (second, image_ids[1])):
            await connection.execute(update(GeneratedImage).where(GeneratedImage.id == image_id)
                                     .values(status=Status.FAILED, error_code="refused"))
        await webhooks.image_changes(first, [(image_ids[0], batch_id)], Status.FAILED)
        waiting = asyncio.create_task(webhooks.image_changes(second, [(image_ids[1], batch_id)], Status.FAILED))
        await asyncio.sleep(0.5)
        assert not waiting.done()  # held at the batch's lock until the first commits
        await first_transaction.commit()
        await waiting
        await second_transaction.commit()
    assert await _batch_done_rows(database, batch_id) == 1


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_finishers_of_a_batch_under_way_do_not_wait_for_each_other_on_postgresql(
        tmp_path: Path, settings: Settings, database: Database) -> None:
    """While an image is queued, finishers share the batch's lock (no queue of finishers, no count);
    the queued image's own finisher, last, still comes after them and says batch.done."""
    await configure_endpoints(configured(settings, "http://127.0.0.1:9/hooks"), database.webhooks)
    [post] = read_posts([write_posts(tmp_path / "three", 1, markers=2, name="three")], settings)
    batch = await database.queue.enqueue(PostsToEnqueue([post]))
    assert batch.batch_id is not None and len(batch.image_ids) == 3
    batch_id, (first_image, second_image, last_image) = batch.batch_id, batch.image_ids
    statements: list[str] = []
    async with database.engine.connect() as first, database.engine.connect() as second, \
            database.engine.connect() as last:
        for connection, image_id in ((first, first_image), (second, second_image)):
            await connection.begin()
            await connection.execute(update(GeneratedImage).where(GeneratedImage.id == image_id)
                                     .values(status=Status.FAILED, error_code="refused"))
            await connection.run_sync(lambda sync: event.listen(
                sync, "before_cursor_execute", lambda *arguments: statements.append(arguments[2])))
        await asyncio.wait_for(webhooks.image_changes(first, [(first_image, batch_id)], Status.FAILED), 5)
        # Not held up by the first finisher, which has not committed.
        await asyncio.wait_for(webhooks.image_changes(second, [(second_image, batch_id)], Status.FAILED), 5)
        assert not any("count(" in statement.lower() for statement in statements), statements
        # The queued image is held for them: its change (a claim, or here a failure for good, as
        # fail_exhausted does) waits until both have committed, then its finisher sees theirs.
        last_transaction = await last.begin()
        finishing = asyncio.create_task(last.execute(update(GeneratedImage).where(GeneratedImage.id == last_image)
                                                     .values(status=Status.FAILED, error_code="refused")))
        await asyncio.sleep(0.5)
        assert not finishing.done()
        await first.commit()
        await second.commit()
        await asyncio.wait_for(finishing, 5)
        await webhooks.image_changes(last, [(last_image, batch_id)], Status.FAILED)
        await last_transaction.commit()
    assert await _batch_done_rows(database, batch_id) == 1
