"""GET /api/events through one poller per process (api/event_hub.py), on a real uvicorn on loopback.

Every statement the app's engine runs is seen by a ``before_cursor_execute`` listener, so the
tests count the database's event queries exactly. Events are written as rows, as the queue
writes them; the clients are raw sockets (bench/events_clients.py) reading the chunked stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
import uvicorn
from bench.events_clients import SseClient
from sqlalchemy import event, insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from blogimg.api import event_hub
from blogimg.api.app import create_app
from blogimg.api.deps import ApiState
from blogimg.config import Settings
from blogimg.db.tables import ImageEvent, utcnow
from blogimg.domain import Status
from blogimg.storage import MemoryStorage
from tests.support import API_KEY, on_both_engines

pytestmark = pytest.mark.timeout(120)
POLL = event_hub.POLL_SECONDS


class EventQueries:
    """Counts the SELECTs on image_events that one engine runs."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine, self.count = engine.sync_engine, 0
        event.listen(self.engine, "before_cursor_execute", self._seen)

    def _seen(self, _connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "image_events" in statement:
            self.count += 1

    def stop(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._seen)

    async def during(self, seconds: float) -> int:
        before = self.count
        await asyncio.sleep(seconds)
        return self.count - before


@dataclass
class Served:
    url: str
    state: ApiState
    engine: AsyncEngine
    queries: EventQueries
    listener: Any  #: the listening socket

    async def client(self, query: str = "", headers: dict[str, str] | None = None,
                     receive_buffer: int | None = None) -> SseClient:
        """A connected stream, past its ``retry:`` line: subscribed by then."""
        client = await SseClient.connect(f"{self.url}/api/events{query}", headers, receive_buffer)
        assert await client.read_head() == 200
        await asyncio.wait_for(client.read_until(lambda: client.retry_seen), 10)
        return client

    def subscribers(self) -> int:
        hub = getattr(self.state, "event_hub", None)
        return hub.subscriber_count if hub is not None else 0


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[Served]:
    app = create_app(settings, storage=MemoryStorage())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           timeout_graceful_shutdown=1))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.02)
    listener = server.servers[0].sockets[0]
    port = listener.getsockname()[1]
    state: ApiState = app.state.api
    assert state.runtime is not None
    engine = state.runtime.database.engine
    queries = EventQueries(engine)
    try:
        yield Served(f"http://127.0.0.1:{port}", state, engine, queries, listener)
    finally:
        queries.stop()
        server.should_exit = True
        await task


async def write_events(engine: AsyncEngine, count: int, batch_id: int = 7) -> None:
    async with engine.begin() as connection:
        await connection.execute(insert(ImageEvent), [
            {"image_id": number, "batch_id": batch_id, "status": Status.QUEUED, "created_at": utcnow()}
            for number in range(count)])


async def latest_id(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(text("SELECT coalesce(max(id), 0) FROM image_events"))).scalar_one())


async def receive(client: SseClient, count: int, seconds: float = 15) -> list[int]:
    await asyncio.wait_for(client.read_until(lambda: len(client.events) >= count), seconds)
    return [received.id for received in client.events]


@on_both_engines
async def test_many_clients_cost_one_query_per_poll(settings: Settings) -> None:
    async with serving(settings) as served:
        first = await served.client()
        alone = await served.queries.during(4 * POLL)
        others = [await served.client() for _ in range(19)]
        writing = asyncio.create_task(write_events(served.engine, 30))
        together = await served.queries.during(4 * POLL)
        await writing
        expected = await receive(first, 30)
        for client in others:
            assert await receive(client, 30) == expected  # every event, in order, once
        assert expected == sorted(set(expected)) and len(expected) == 30
        for client in (first, *others):
            client.close()
    # One query per poll whatever the number of clients (a poll may fall either side of a window).
    assert 1 <= alone <= 6 and together <= 6, (alone, together)


@on_both_engines
async def test_a_client_resumes_without_gaps_or_duplicates_while_events_keep_coming(settings: Settings) -> None:
    async with serving(settings) as served:
        start = await latest_id(served.engine)
        listeners = [await served.client() for _ in range(10)]
        before, started = served.queries.count, time.monotonic()
        stop = asyncio.Event()

        async def keep_writing() -> None:
            while not stop.is_set():
                await write_events(served.engine, 3)
                await asyncio.sleep(0.05)

        writer = asyncio.create_task(keep_writing())
        received: list[int] = []
        last = start
        for _ in range(4):  # read some, go away while events keep coming, resume from the last one
            resumed = await served.client(headers={"Last-Event-ID": str(last)})
            await asyncio.wait_for(resumed.read_until(lambda r=resumed: len(r.events) >= 10), 15)  # type: ignore[misc]
            received += [event.id for event in resumed.events]
            last = received[-1]
            resumed.close()
            await asyncio.sleep(3 * POLL)
        stop.set()
        await writer
        total = await latest_id(served.engine) - start
        final = await served.client(f"?after={last}")
        received += await receive(final, total - len(received))
        elapsed = time.monotonic() - started
        queries = served.queries.count - before
        everything = list(range(start + 1, start + total + 1))
        assert received == everything  # no gap, no duplicate, in order, across five connections
        for listener in listeners:
            assert await receive(listener, total) == everything
            listener.close()
        final.close()
    # Polls, plus one catch-up read for each of the five connections that resumed from the past.
    assert queries <= elapsed / POLL + 5 + 3, (queries, elapsed)


async def test_a_client_that_does_not_read_is_cut_off_and_the_others_are_not(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(event_hub, "QUEUE_EVENTS", 1000)  # two pages: a client that reads keeps up
    async with serving(settings) as served:
        # Connections inherit the listener's send buffer: a fixed small one (Linux would let it grow
        # to 4 MB on loopback) makes "the socket is full" come after hundreds of events, not 40,000.
        served.listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
        start = await latest_id(served.engine)
        reader = await served.client()
        stalled = await served.client(receive_buffer=4096)  # subscribed, then reads nothing
        reading = asyncio.create_task(reader.read_until(lambda: len(reader.events) >= 6000))
        for _ in range(20):  # more than socket buffers and the queue hold for a client that never reads
            await write_events(served.engine, 300)
            await asyncio.sleep(0.3)
        deadline = time.monotonic() + 10
        while served.subscribers() > 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert served.subscribers() == 1, "the client that does not read is still subscribed"
        await asyncio.wait_for(reading, 20)
        assert [event.id for event in reader.events] == list(range(start + 1, start + 6001))
        # It reads at last: what it was given, in order, and then the end of its stream.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stalled.read_until(lambda: False), 5)
        assert stalled.ended, "the stream of a client that fell behind did not end"
        got = [event.id for event in stalled.events]
        assert got == list(range(start + 1, start + 1 + len(got))) and len(got) < 6000
        # It reconnects with Last-Event-ID, as EventSource does, and catches up.
        again = await served.client(headers={"Last-Event-ID": str(got[-1] if got else start)})
        assert await receive(again, 6000 - len(got)) == list(range(start + 1 + len(got), start + 6001))
        for client in (reader, stalled, again):
            client.close()


async def test_polls_only_while_someone_listens(settings: Settings) -> None:
    async with serving(settings) as served:
        assert await served.queries.during(3 * POLL) == 0
        clients = [await served.client() for _ in range(5)]
        listening = await served.queries.during(4 * POLL)
        for client in clients:
            client.close()
        deadline = time.monotonic() + 10
        while served.subscribers() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert served.subscribers() == 0, "closed streams left subscribers behind"
        await asyncio.sleep(2 * POLL)  # a poll under way when the last one left may finish
        gone = await served.queries.during(4 * POLL)
    assert 1 <= listening <= 6 and gone == 0, (listening, gone)


@on_both_engines
async def test_a_database_error_pauses_the_stream_and_it_carries_on(
        settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    async with serving(settings) as served:
        client = await served.client()
        start = await latest_id(served.engine)
        async with served.engine.begin() as connection:
            await connection.execute(text("ALTER TABLE image_events RENAME TO image_events_away"))
        with caplog.at_level(logging.INFO, logger="blogimg.api.event_hub"):
            await asyncio.sleep(8 * POLL)  # several failed polls
            async with served.engine.begin() as connection:
                await connection.execute(text("ALTER TABLE image_events_away RENAME TO image_events"))
            await write_events(served.engine, 3)
            assert await receive(client, 3) == [start + 1, start + 2, start + 3]  # the same stream
        assert not client.ended
        warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
        assert len(warnings) == 1, [record.getMessage() for record in warnings]  # said once, not per poll
        assert "image_events" in warnings[0].getMessage()
        client.close()


async def test_an_event_committed_after_a_later_one_still_arrives_first(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL numbers rows when they are inserted, not when they commit: id 11 may be visible
    before id 10. A poller that moved on past 11 would never send 10."""
    from tests.postgres import postgres_database

    monkeypatch.setattr(event_hub, "GAP_GRACE_SECONDS", 2.0)
    with postgres_database() as url:
        async with serving(settings.model_copy(update={"database_url": url})) as served:
            client = await served.client()
            start = await latest_id(served.engine)
            async with served.engine.connect() as slow:
                await slow.begin()
                await slow.execute(insert(ImageEvent), [{"image_id": 1, "batch_id": 1, "status": Status.QUEUED}])
                await write_events(served.engine, 1, batch_id=2)  # takes the next id, commits first
                await asyncio.sleep(3 * POLL)  # polls see the later event alone
                await slow.commit()
            assert await receive(client, 2) == [start + 1, start + 2]  # both, in id order
            # A transaction that rolls back leaves its id unused for good: the hub waits out the
            # grace period for it, then goes on.
            async with served.engine.connect() as abandoned:
                await abandoned.begin()
                await abandoned.execute(insert(ImageEvent), [{"image_id": 1, "batch_id": 1, "status": Status.QUEUED}])
                await write_events(served.engine, 1, batch_id=3)
                await abandoned.rollback()
            assert await receive(client, 3, seconds=10) == [start + 1, start + 2, start + 4]
            client.close()


async def test_a_reconnect_with_both_after_and_last_event_id_resumes_after_the_larger(settings: Settings) -> None:
    """EventSource reconnects to the URL it opened (the page's ``?after=``) and adds the newest id it
    received as Last-Event-ID: the stream must go on from there, not replay from the page's first id."""
    async with serving(settings) as served:
        await write_events(served.engine, 8)
        start = await latest_id(served.engine) - 8
        client = await served.client(f"?after={start + 1}", headers={"Last-Event-ID": str(start + 5)})
        assert await receive(client, 3) == [start + 6, start + 7, start + 8]
        client.close()
        # The page's own start point still counts when the header is older (a stale reconnect).
        client = await served.client(f"?after={start + 6}", headers={"Last-Event-ID": str(start + 2)})
        assert await receive(client, 2) == [start + 7, start + 8]
        client.close()


async def test_an_open_stream_ends_once_its_session_is_signed_out(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from blogimg.api.routes import events as events_route

    monkeypatch.setattr(events_route, "ACCESS_CHECK_SECONDS", 0.5)
    keyed = settings.model_copy(update={"api_keys": [API_KEY]})
    async with serving(keyed) as served, httpx2.AsyncClient(base_url=served.url, follow_redirects=True) as browser:
        signed_in = await browser.post("/sign-in", data={"key": API_KEY})
        assert signed_in.status_code == 200, signed_in.text  # the 303 followed to the overview
        cookie = browser.cookies["blogimg_session"]
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', signed_in.text)
        assert csrf is not None
        by_cookie = await served.client(headers={"Cookie": f"blogimg_session={cookie}"})
        by_key = await served.client(headers={"Authorization": f"Bearer {API_KEY}"})
        await asyncio.sleep(1.5)  # checked a few times: still valid, still open
        await write_events(served.engine, 1)
        assert len(await receive(by_cookie, 1)) == 1 and not by_cookie.ended
        out = await browser.post("/sign-out", data={"csrf_token": csrf.group(1)}, follow_redirects=False)
        assert out.status_code == 303
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(by_cookie.read_until(lambda: by_cookie.ended), 5)
        assert by_cookie.ended, "the stream outlived its sign-out"
        await write_events(served.engine, 1)
        assert len(await receive(by_key, 2)) == 2 and not by_key.ended  # a valid key's stream goes on
        for client in (by_cookie, by_key):
            client.close()


async def test_an_event_committed_late_below_the_newest_is_not_lost_when_the_hub_starts(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub starts when its first listener comes. Had it started at the newest id, an event
    whose transaction took a lower id and commits a moment later would be behind it for good."""
    from tests.postgres import postgres_database

    monkeypatch.setattr(event_hub, "GAP_GRACE_SECONDS", 2.0)
    with postgres_database() as url:
        async with serving(settings.model_copy(update={"database_url": url})) as served:
            await write_events(served.engine, 1, batch_id=1)
            await asyncio.sleep(2.5)  # settled: older than the grace period
            start = await latest_id(served.engine)
            async with served.engine.connect() as slow:
                await slow.begin()
                await slow.execute(insert(ImageEvent), [{"image_id": 1, "batch_id": 1, "status": Status.QUEUED}])
                await write_events(served.engine, 1, batch_id=2)  # the next id, committed first
                resuming = await served.client(f"?after={start}")  # the first listener starts the hub
                await asyncio.sleep(3 * POLL)
                await slow.commit()
            assert await receive(resuming, 2) == [start + 1, start + 2]
            resuming.close()
