"""One poller of ``image_events`` per process, fanned out to every ``/api/events`` client.

Each SSE connection used to poll the database on its own (two queries a second each); here one
task reads the events after the last one it has passed on — one query per poll, however many
clients listen — and hands each event, formatted once, to every subscriber's bounded queue.
The task runs only while at least one client listens.

- A client that resumes (``Last-Event-ID``) from before the hub's position first reads the events
  in between from the database itself (one query per page, usually one), then takes the live
  ones: the two ranges meet at the hub's position when it joined, so nothing is missed or repeated.
- A client that does not read fills its queue; the hub then drops it, never waits for it, and its
  stream ends after what it was given. The browser reconnects with ``Last-Event-ID`` and catches up.
- Event ids come from a sequence, and on PostgreSQL a transaction may commit id 11 before id 10.
  A poller that moved past 11 would never see 10, so the hub passes events on only up to the first
  missing id, and waits up to ``GAP_GRACE_SECONDS`` for it to appear before it takes the id for one
  a rolled-back transaction used (SQLite commits in id order; there the wait never happens).
- A failed poll (the database out of reach) is logged once and retried with backoff; listeners
  stay connected and get everything once it answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from blogimg.db.catalog import Catalog
from blogimg.db.failures import describe
from blogimg.db.tables import ImageEvent

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5  #: how often the hub reads new events while someone listens
PAGE = 500  #: events read per query; a full page is followed by the next at once
QUEUE_EVENTS = 2_000  #: events held for one client before a client that does not read is dropped
GAP_GRACE_SECONDS = 5.0  #: how long a missing id may hold back the events after it
BACKOFF_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0)  #: waits between failed polls, the last repeated


@dataclass(frozen=True, slots=True)
class SentEvent:
    """One event as the stream sends it: its id and its whole ``id:``/``event:``/``data:`` frame."""

    id: int
    frame: str


def frame(event: ImageEvent) -> SentEvent:
    payload = {"image_id": event.image_id, "batch_id": event.batch_id, "status": event.status,
               "at": event.created_at.isoformat() + "Z"}
    return SentEvent(event.id, f"id: {event.id}\nevent: image\ndata: {json.dumps(payload)}\n\n")


@dataclass(eq=False)
class Subscription:
    """One client's place in the stream: the events it still has to read, in id order."""

    catalog: Catalog
    live_after: int  #: events with larger ids reach this subscription from the hub
    catch_up_after: int | None  #: the last id read from the database while catching up; None when done
    queue: asyncio.Queue[SentEvent] = field(default_factory=lambda: asyncio.Queue(QUEUE_EVENTS))
    dropped: bool = False  #: the hub gave up on it (its queue was full, or the hub closed)
    _caught_up: list[SentEvent] = field(default_factory=list)

    async def next_events(self, timeout: float, most: int) -> list[SentEvent]:
        """The next events in order, at most ``most``, as many as are here already (one write for
        all of them); empty after ``timeout`` seconds without one, or once dropped and drained."""
        if self.catch_up_after is not None and not self._caught_up:
            await self._read_catch_up()
        if self._caught_up:
            taken, self._caught_up = self._caught_up[:most], self._caught_up[most:]
            return taken
        if self.queue.empty():
            if self.dropped:
                return []
            try:
                first = await asyncio.wait_for(self.queue.get(), timeout)
            except TimeoutError:
                return []
        else:
            first = self.queue.get_nowait()
        taken = [first]
        while len(taken) < most and not self.queue.empty():
            taken.append(self.queue.get_nowait())
        return taken

    @property
    def ended(self) -> bool:
        """Dropped by the hub, and everything it was given has been read: the stream should end."""
        return self.dropped and self.queue.empty() and not self._caught_up and self.catch_up_after is None

    async def _read_catch_up(self) -> None:
        assert self.catch_up_after is not None
        rows = await self.catalog.events_after(self.catch_up_after, limit=PAGE, through=self.live_after)
        self._caught_up = [frame(row) for row in rows]
        self.catch_up_after = rows[-1].id if len(rows) == PAGE else None

    def offer(self, events: Sequence[SentEvent]) -> bool:
        """Queue what this subscription has not had; False when it is full (the hub drops it)."""
        for event in events:
            if event.id > self.live_after:
                try:
                    self.queue.put_nowait(event)
                except asyncio.QueueFull:
                    return False
        return True


class EventHub:
    """Reads new events once per poll for every subscriber of this process."""

    def __init__(self, catalog: Catalog, *, poll_seconds: float = POLL_SECONDS,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.catalog = catalog
        self.poll_seconds = poll_seconds
        self._sleep = sleep
        # Weak: a stream that ends without saying so (its response never started) takes its
        # subscription with it when it is collected, so none outlives its connection.
        self._subscribers: weakref.WeakSet[Subscription] = weakref.WeakSet()
        self._position: int | None = None  #: the last id passed on; None while nobody listens
        self._now = 0  #: the newest id when the hub last started: where a client "from now" begins
        self._task: asyncio.Task[None] | None = None
        self._starting = asyncio.Lock()
        self._gap: tuple[int, float] | None = None  #: (first missing id, when it was first missed)
        self._closed = False

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    async def subscribe(self, after: int | None) -> Subscription:
        """Join the stream after event ``after`` (None: from now); the caller must unsubscribe."""
        if self._closed:
            raise RuntimeError("the event hub is closed")
        if self._task is None:
            async with self._starting:
                if self._task is None:
                    # The first listener after a quiet spell: start near the newest event, not
                    # from wherever the hub stopped (it may be a million events behind). Near, not
                    # at: on PostgreSQL an id below the newest may still be uncommitted, and a hub
                    # that started past it would never send it. From the newest settled id, the gap
                    # wait covers the young ones; a client "from now" still starts at the newest.
                    self._position, self._now = await self.catalog.settled_event_ids(GAP_GRACE_SECONDS)
                    self._gap = None
                    self._task = asyncio.create_task(self._run(), name="blogimg-event-hub")
        position = self._position
        assert position is not None  # set whenever the task exists
        if after is None or after >= position:
            subscription = Subscription(self.catalog, live_after=max(position, self._now) if after is None else after,
                                        catch_up_after=None)
        else:
            subscription = Subscription(self.catalog, live_after=position, catch_up_after=after)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    async def close(self) -> None:
        """Stop polling and end every stream (server shutdown)."""
        self._closed = True
        for subscription in self._subscribers:
            subscription.dropped = True
        self._subscribers.clear()
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        failures = 0
        try:
            while True:
                await self._sleep(self.poll_seconds if failures == 0 else
                                  BACKOFF_SECONDS[min(failures, len(BACKOFF_SECONDS)) - 1])
                while self._subscribers:
                    try:
                        full_page = await self._poll()
                    except Exception as error:  # noqa: BLE001 - any failure: keep the listeners, try again
                        if failures == 0:
                            log.warning("live events paused: reading image_events failed (%s); retrying with backoff",
                                        describe(error))
                        failures += 1
                        break
                    if failures:
                        log.info("live events resumed after %d failed reads", failures)
                        failures = 0
                    if not full_page:
                        break
                if not self._subscribers:
                    return
        finally:
            # Nobody listens (or shutdown): the next subscriber starts the hub afresh from "now".
            if self._task is asyncio.current_task():
                self._task, self._position = None, None

    async def _poll(self) -> bool:
        """Read and pass on one page of new events; True when the page was full (more may wait)."""
        assert self._position is not None
        rows = await self.catalog.events_after(self._position, limit=PAGE)
        ready = self._ready(rows)
        if ready:
            events = [frame(row) for row in ready]
            for subscription in list(self._subscribers):
                if not subscription.offer(events):
                    # Too far behind: end its stream rather than hold more for it, or wait for it.
                    subscription.dropped = True
                    self._subscribers.discard(subscription)
            self._position = ready[-1].id
        return len(rows) == PAGE and len(ready) == len(rows)

    def _ready(self, rows: Sequence[ImageEvent]) -> list[ImageEvent]:
        """The rows up to the first missing id, unless that id has been missing for the grace period."""
        assert self._position is not None
        expected = self._position + 1
        for index, row in enumerate(rows):
            if row.id != expected:
                now = time.monotonic()
                if self._gap is None or self._gap[0] != expected:
                    self._gap = (expected, now)
                if now - self._gap[1] < GAP_GRACE_SECONDS:
                    return list(rows[:index])
                # Missing too long: a rolled-back transaction used those ids; go past them.
            expected = row.id + 1
        return list(rows)
