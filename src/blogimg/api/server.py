"""Serving the API with uvicorn, with limits on what slow or idle clients may hold.

uvicorn closes a keep-alive connection left idle between requests, but it waits without end for
a request's headers or body: 300 clients that each send a byte a minute (slowloris) hold 300
connections and their memory for good, and a client that connects and says nothing is never
dropped. :class:`GuardedH11Protocol` adds what is missing:

- a request's head must be complete within ``header_timeout`` of the connection opening, or of
  the first byte of the next request on a kept-alive connection (of the last response, for a
  request pipelined behind it): else ``408`` and closed;
- inside a body, the client may pause at most ``body_timeout`` (the whole body may take longer,
  as long as it keeps coming; pauses blogimg causes by not reading do not count);
- at most ``max_connections`` are open: one more is answered ``503`` and closed at once, before
  it can hold anything. (uvicorn's ``limit_concurrency`` answers 503 only once a request head has
  arrived, which a slow client never completes.)

It is h11, uvicorn's pure-Python parser, whatever else is installed: these checks read h11's
connection state, and the API's own work, not parsing, is what its requests cost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from blogimg import logs
from blogimg.config import Settings

log = logging.getLogger(__name__)
_REFUSAL_LOG_SECONDS = 60.0  # under a flood, say so once a minute, not once per connection


@dataclass(frozen=True, slots=True)
class ServerLimits:
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive_timeout: int = 5  #: whole seconds: uvicorn takes no fraction
    max_connections: int = 1000

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerLimits:
        return cls(header_timeout=settings.server_header_timeout, body_timeout=settings.server_body_timeout,
                   keep_alive_timeout=settings.server_keep_alive_timeout,
                   max_connections=settings.server_max_connections)


def run_server(app: Any, *, host: str, port: int, limits: ServerLimits) -> None:
    """Serve ``app`` on host:port until SIGINT/SIGTERM, with ``limits``."""
    # With JSON logs uvicorn must not install its own text handlers: its lines go to ours.
    config: dict[str, Any] = {"log_config": None} if logs.is_json() else {}
    uvicorn.run(app, host=host, port=port, log_level="info", http=guarded_protocol(limits),
                timeout_keep_alive=limits.keep_alive_timeout, **config)


def guarded_protocol(limits: ServerLimits) -> type[GuardedH11Protocol]:
    """The protocol class uvicorn builds each connection with, carrying ``limits``."""
    given = limits

    class Configured(GuardedH11Protocol):
        limits = given

    return Configured


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline, a body pause limit and a connection cap."""

    limits = ServerLimits()
    _last_refusal_logged = 0.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timer: asyncio.TimerHandle | None = None
        self._waiting_for: str | None = None  # "head" or "body": what the timer is for

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._refuse_connection()
            return
        self._wait_for("head", self.limits.header_timeout)

    def data_received(self, data: bytes) -> None:
        if self._waiting_for is None and self._between_requests():
            # The first byte of the next request on a kept-alive connection: its head's clock starts.
            self._wait_for("head", self.limits.header_timeout)
        super().data_received(data)
        if self.transport.is_closing():
            self._stop_waiting()
        elif self.conn.their_state is h11.SEND_BODY:
            self._wait_for("body", self.limits.body_timeout)  # every chunk restarts the pause clock
        elif self.conn.their_state is not h11.IDLE:
            self._stop_waiting()  # the request is all here; what happens next is the app's

    def on_response_complete(self) -> None:
        # With pipelining, uvicorn starts the next request here, from bytes that came with the last
        # one, not in data_received: its clock starts now. (A request head cancels keep-alive.)
        super().on_response_complete()
        if self.transport.is_closing():
            self._stop_waiting()
        elif self.conn.their_state is h11.SEND_BODY:
            self._wait_for("body", self.limits.body_timeout)
        elif self.conn.their_state is h11.IDLE:
            if self.conn.trailing_data[0]:
                self._unset_keepalive_if_required()  # part of a head is no idle connection
                self._wait_for("head", self.limits.header_timeout)
        else:
            self._stop_waiting()  # the pipelined request is all here too

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def _between_requests(self) -> bool:
        return self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete)

    def _wait_for(self, what: str, seconds: float) -> None:
        self._stop_waiting()
        self._waiting_for = what
        self._timer = self.loop.call_later(seconds, self._time_is_up)

    def _stop_waiting(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._waiting_for = None, None

    def _time_is_up(self) -> None:
        what, self._timer, self._waiting_for = self._waiting_for, None, None
        if self.transport.is_closing():
            return
        if what == "body" and self.flow.read_paused:
            # The app has not read what came already; the client is waiting for us, not we for it.
            self._wait_for("body", self.limits.body_timeout)
            return
        if what == "head":
            seconds = self.limits.header_timeout
            self._write_and_close(408, "Request Timeout", f"request headers not received within {seconds:g} s")
        else:
            # The app may already be answering, so no response of ours: the app sees a disconnect.
            self.transport.close()

    def _refuse_connection(self) -> None:
        now = time.monotonic()
        if now - GuardedH11Protocol._last_refusal_logged > _REFUSAL_LOG_SECONDS:
            GuardedH11Protocol._last_refusal_logged = now
            log.warning("refusing connections beyond server_max_connections=%d", self.limits.max_connections)
        self._write_and_close(503, "Service Unavailable", "too many open connections; try again shortly")

    def _write_and_close(self, status: int, reason: str, message: str) -> None:
        # Written raw: h11 sends a response only after a request head, which is what never came.
        body = (message + "\n").encode()
        self.transport.write(
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode() + body)
        self.transport.close()
