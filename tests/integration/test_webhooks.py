"""Webhooks end to end: events written with the changes they report, signed, sent to real loopback receivers.

Every signature is checked with the ``standardwebhooks`` package (the reference implementation),
not with our own signer.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import standardwebhooks
from sqlalchemy import event, select, update

from blogimg.config import Settings
from blogimg.db.database import Database
from blogimg.db.jobs import PostsToEnqueue
from blogimg.db.tables import WebhookDelivery, utcnow
from blogimg.db.webhooks import record_event
from blogimg.domain import Outcome
from blogimg.pipeline.bulk_actions import prune_events
from blogimg.pipeline.generate import read_posts
from blogimg.pipeline.runtime import open_runtime
from blogimg.pipeline.webhook_endpoints import configure_endpoints
from blogimg.pipeline.webhook_sender import WebhookSender
from blogimg.pipeline.webhook_signing import new_secret
from blogimg.storage import MemoryStorage
from blogimg.testing import FakeProvider
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.support import on_both_engines, registry_with, run_cli, write_posts

SECRET = new_secret()


def webhook_settings(settings: Settings, *urls: str, delays: tuple[float, ...] = (0.05, 0.05, 0.05, 0.05)) -> Settings:
    return settings.model_copy(update={"webhook_urls": list(urls), "webhook_secret": SECRET,
                                       "webhook_allow_loopback": True, "webhook_timeout": 2.0,
                                       "webhook_retry_delays": list(delays)})


async def until(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.05)


def verified(receiver: WebhookReceiver) -> list[dict]:
    """Every accepted body, each signature checked by the reference library."""
    webhook = standardwebhooks.Webhook(SECRET)
    return [webhook.verify(body, headers) for headers, body in receiver.accepted]


async def deliveries(database: Database) -> list[WebhookDelivery]:
    async with database.sessions() as session:
        return list(await session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


async def send_until_settled(database: Database, sender: WebhookSender, timeout: float = 30) -> None:
    task = asyncio.create_task(sender.run())
    try:
        deadline = time.monotonic() + timeout
        while await database.webhooks.pending_count():
            assert time.monotonic() < deadline, "deliveries still pending"
            await asyncio.sleep(0.05)
    finally:
        task.cancel()


@on_both_engines
async def test_image_success_failure_and_batch_done_arrive_signed(tmp_path: Path, settings: Settings) -> None:
    # Two images: the cover succeeds, the inline one is refused by the provider (a failure for good).
    provider = FakeProvider("fake", script=lambda request, number: Outcome.REFUSED if "inline" in request.prompt
                            else Outcome.OK)
    with WebhookReceiver() as receiver:
        configured = webhook_settings(settings, receiver.url)
        async with open_runtime(configured, providers=["fake"], registry=registry_with(provider),
                                storage=MemoryStorage()) as runtime:
            [post] = read_posts([write_posts(tmp_path / "posts", 1, markers=1, prompt="inline picture")], configured)
            batch = await runtime.database.queue.enqueue(PostsToEnqueue([post]))
            worker = runtime.worker()
            worker.poll_interval = 0.05
            task = asyncio.create_task(worker.run())
            try:
                await until(lambda: len(receiver.accepted) >= 3)
                await asyncio.sleep(0.3)  # nothing more may come
            finally:
                worker.stop()
                await task
    payloads = verified(receiver)
    assert Counter(payload["type"] for payload in payloads) == {"image.succeeded": 1, "image.failed": 1, "batch.done": 1}
    by_type = {payload["type"]: payload for payload in payloads}
    assert by_type["batch.done"]["data"] == {"batch_id": batch.batch_id, "succeeded": 1, "failed": 1,
                                             "finished_at": by_type["batch.done"]["data"]["finished_at"]}
    failed = by_type["image.failed"]["data"]
    assert failed["batch_id"] == batch.batch_id and failed["status"] == "failed" and failed["error_code"] == "refused"
    assert by_type["image.succeeded"]["data"]["error_code"] is None
    assert {payload["data"]["image_id"] for payload in payloads if payload["type"].startswith("image.")} \
        == set(batch.image_ids)
    assert all("url" not in json.dumps(payload["data"]) for payload in payloads)  # URLs are derived, never sent
    assert len(set(receiver.accepted_ids())) == 3


@on_both_engines
@pytest.mark.parametrize("outage", ["503", "refused"])
async def test_a_receiver_down_for_three_attempts_gets_each_event_exactly_once(
        settings: Settings, database: Database, outage: str) -> None:
    if outage == "503":
        receiver = WebhookReceiver([503] * 9)  # three rounds of three events
    else:
        # A port that is free now: connections are refused until the receiver listens on it, after three rounds.
        probe = WebhookReceiver()
        port, url = probe.port, probe.url
        probe.server.server_close()
    configured = webhook_settings(settings, receiver.url if outage == "503" else url, delays=(0.2, 0.2, 0.2, 0.2))
    await configure_endpoints(configured, database.webhooks)
    async with database.sessions.begin() as session:
        for number in range(3):
            await record_event(session, "batch.done", {"batch_id": number}, event_key=f"test:{number}")
    sender = WebhookSender.from_settings(configured, database.webhooks)
    if outage == "503":
        with receiver:
            await send_until_settled(database, sender)
    else:
        for _ in range(3):  # three rounds of refused connections, then the receiver comes up
            await sender.send_due()
            await asyncio.sleep(0.25)
        rows = await deliveries(database)
        assert {row.attempts for row in rows} == {3} and {row.status for row in rows} == {"pending"}
        assert all("ConnectError" in (row.last_error or "") for row in rows), [row.last_error for row in rows]
        receiver = WebhookReceiver(port=port)
        with receiver:
            await send_until_settled(database, sender)
    ids = receiver.accepted_ids()
    assert sorted(ids) == ["test:0", "test:1", "test:2"]  # each once, by webhook-id
    assert len(verified(receiver)) == 3
    rows = await deliveries(database)
    assert {(row.status, row.attempts) for row in rows} == {("delivered", 4)}
    if outage == "503":
        assert len(receiver.received) == 12 and {row.last_status_code for row in rows} == {200}


@on_both_engines
async def test_410_disables_the_endpoint_and_stops_its_deliveries(settings: Settings, database: Database) -> None:
    with WebhookReceiver([410]) as gone, WebhookReceiver() as other:
        configured = webhook_settings(settings, gone.url.replace("127.0.0.1", "localhost"), other.url)
        await configure_endpoints(configured, database.webhooks)
        async with database.sessions.begin() as session:
            for number in range(3):
                await record_event(session, "image.failed", {"image_id": number})
        sender = WebhookSender.from_settings(configured, database.webhooks)
        sender.batch_size = 1  # one at a time: the 410 comes before the endpoint's other deliveries are sent
        await send_until_settled(database, sender)
    assert len(gone.received) == 1 and len(other.accepted) == 3
    endpoints = {endpoint.url: endpoint for endpoint in await database.webhooks.endpoints()}
    disabled = endpoints[gone.url.replace("127.0.0.1", "localhost")]
    assert not disabled.enabled and "410" in (disabled.disabled_reason or "")
    rows = [row for row in await deliveries(database) if row.endpoint_id == disabled.id]
    assert [row.status for row in rows] == ["failed"] * 3
    assert rows[0].last_status_code == 410
    # No new event is written for a disabled endpoint.
    async with database.sessions.begin() as session:
        await record_event(session, "image.failed", {"image_id": 9})
    assert len([row for row in await deliveries(database) if row.endpoint_id == disabled.id]) == 3


async def test_a_delivery_is_never_sent_by_two_senders_at_once(settings: Settings, database: Database) -> None:
    with WebhookReceiver() as receiver:
        configured = webhook_settings(settings, receiver.url)
        await configure_endpoints(configured, database.webhooks)
        async with database.sessions.begin() as session:
            await record_event(session, "batch.done", {"batch_id": 1}, event_key="batch.done:1")
        claimed = await database.webhooks.claim_due(limit=10, lease_seconds=30)
        assert len(claimed) == 1
        assert await database.webhooks.claim_due(limit=10, lease_seconds=30) == []  # held: nobody else sends it
        # A repeat of the event (a unit of work that ran twice) writes nothing new.
        async with database.sessions.begin() as session:
            await record_event(session, "batch.done", {"batch_id": 1}, event_key="batch.done:1")
        assert len(await deliveries(database)) == 1


async def test_an_address_that_turned_private_after_configuration_is_refused_at_send_time(
        settings: Settings, database: Database) -> None:
    answers = {"hooks.example.test": ["93.184.215.14"]}  # public when configured …

    async def resolver(host: str, port: int) -> list[str]:
        return answers[host]

    configured = webhook_settings(settings, "http://hooks.example.test/in").model_copy(
        update={"webhook_allow_loopback": False})
    await configure_endpoints(configured, database.webhooks, resolver=resolver)
    async with database.sessions.begin() as session:
        await record_event(session, "image.succeeded", {"image_id": 1})
    answers["hooks.example.test"] = ["169.254.169.254"]  # … the metadata service when sent (DNS rebinding)
    sender = WebhookSender(database.webhooks, retry_delays=(), resolver=resolver)
    assert await sender.send_due() == 1
    [row] = await deliveries(database)
    assert row.status == "failed" and row.last_status_code is None
    assert "169.254.169.254 is not a public address" in (row.last_error or "")


@on_both_engines
async def test_a_real_worker_and_a_receiver_down_for_three_attempts_of_every_event(
        tmp_path: Path, settings: Settings) -> None:
    """The must-show case end to end: a worker makes the images, and every event's first three tries get 503."""
    with WebhookReceiver(refuse_first=3) as receiver:
        configured = webhook_settings(settings, receiver.url, delays=(0.1, 0.1, 0.1, 0.1))
        async with open_runtime(configured, providers=["fake"], registry=registry_with(FakeProvider("fake")),
                                storage=MemoryStorage()) as runtime:
            posts = read_posts([write_posts(tmp_path / "posts", 2, markers=1)], configured)
            batch = await runtime.database.queue.enqueue(PostsToEnqueue(posts))
            worker = runtime.worker()
            worker.poll_interval = 0.05
            assert worker.webhook_sender is not None
            worker.webhook_sender.poll_interval = 0.05
            task = asyncio.create_task(worker.run())
            try:
                await until(lambda: len(receiver.accepted) >= len(batch.image_ids) + 1, timeout=60)
                await asyncio.sleep(0.5)  # nothing more may come
            finally:
                worker.stop()
                await task
    payloads = verified(receiver)
    ids = receiver.accepted_ids()
    assert len(ids) == len(set(ids)) == len(batch.image_ids) + 1  # each event exactly once, by webhook-id
    assert Counter(payload["type"] for payload in payloads) == {"image.succeeded": len(batch.image_ids), "batch.done": 1}
    assert {payload["data"]["image_id"] for payload in payloads if payload["type"] == "image.succeeded"} \
        == set(batch.image_ids)
    assert set(receiver.attempts.values()) == {4}  # three refused tries, then the one that was taken


@on_both_engines
async def test_idle_polls_take_no_write_lock(settings: Settings, database: Database) -> None:
    """Nothing due: a sender's polls are reads; not one UPDATE, with or without an enabled endpoint."""
    statements: list[str] = []

    def record(_connection: object, _cursor: object, statement: str, *_rest: object) -> None:
        statements.append(statement.strip().upper())

    sender = WebhookSender(database.webhooks, allow_loopback=True)
    event.listen(database.engine.sync_engine, "before_cursor_execute", record)
    try:
        for _ in range(5):  # no endpoint at all
            assert not await sender.send_due()
        await configure_endpoints(webhook_settings(settings, "http://127.0.0.1:9/hooks"), database.webhooks)
        async with database.sessions.begin() as session:
            await record_event(session, "image.failed", {"image_id": 1})
            await session.execute(update(WebhookDelivery).values(next_attempt_at=utcnow().replace(year=2100)))
        statements.clear()
        for _ in range(5):  # an endpoint, and a delivery not due yet
            assert not await sender.send_due()
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", record)
    assert statements and not [statement for statement in statements if statement.startswith("UPDATE")], statements
    assert "BEGIN IMMEDIATE" not in " ".join(statements)  # not even the write lock, on SQLite


async def test_a_one_shot_generate_sends_its_last_events_before_it_exits(tmp_path: Path) -> None:
    """``blogimg generate`` runs its worker for one batch: batch.done must not wait for another worker."""
    posts = write_posts(tmp_path / "posts", 1, markers=1)
    with WebhookReceiver() as receiver:
        result = run_cli("generate", str(posts), "--providers", "card", data=tmp_path / "data", cwd=tmp_path,
                         timeout=120, BLOGIMG_WEBHOOK_URLS=receiver.url, BLOGIMG_WEBHOOK_SECRET=SECRET,
                         BLOGIMG_WEBHOOK_ALLOW_LOOPBACK="true", BLOGIMG_VARIANT_WIDTHS="64", BLOGIMG_AVIF_EFFORT="0")
        accepted_at_exit = verified(receiver)  # read at once: the command has exited
    assert result.returncode == 0, result.stderr
    assert Counter(payload["type"] for payload in accepted_at_exit) == {"image.succeeded": 2, "batch.done": 1}


@on_both_engines
async def test_prune_events_deletes_old_finished_deliveries(settings: Settings, database: Database) -> None:
    await configure_endpoints(webhook_settings(settings, "http://127.0.0.1:9/hooks"), database.webhooks)
    async with database.sessions.begin() as session:
        for number in range(6):
            await record_event(session, "image.failed", {"image_id": number}, event_key=f"event:{number}")
    old, recent = utcnow().replace(year=2000), utcnow()
    statuses = {"event:0": ("delivered", old), "event:1": ("failed", old), "event:2": ("pending", old),
                "event:3": ("delivered", recent), "event:4": ("failed", recent), "event:5": ("pending", recent)}
    async with database.sessions.begin() as session:
        for message_id, (status, created_at) in statuses.items():
            await session.execute(update(WebhookDelivery).where(WebhookDelivery.message_id == message_id)
                                  .values(status=status, created_at=created_at))
    assert await prune_events(database, 30) == 2
    assert [row.message_id for row in await deliveries(database)] == [f"event:{number}" for number in range(2, 6)]
