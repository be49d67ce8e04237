"""``blogimg serve`` cuts off slow and idle clients and caps open connections (issue 11).

Raw sockets against a real server on a loopback port (tests/hostile.py), with the limits set
short through their settings: BLOGIMG_SERVER_HEADER_TIMEOUT, _BODY_TIMEOUT, _KEEP_ALIVE_TIMEOUT
and _MAX_CONNECTIONS. Each test watches at most a few seconds past the limit it checks.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tests.hostile import Server, call, serving

pytestmark = pytest.mark.timeout(180)

HEAD_START = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"


def connect(server: Server) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    connection.setblocking(False)
    return connection


def closed_by_server(connection: socket.socket) -> bytes | None:
    """What the server sent, once it has closed the connection; None while it is open."""
    received = b""
    while True:
        try:
            chunk = connection.recv(65536)
        except (BlockingIOError, InterruptedError):
            return None
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def watch(connections: list[socket.socket], seconds: float, trickle: bool = False) -> dict[int, tuple[float, bytes]]:
    """For ``seconds``, note when each connection is closed and what it got; with ``trickle``,
    send each open one a header byte every quarter second meanwhile, as slowloris does."""
    started, closed = time.monotonic(), dict[int, tuple[float, bytes]]()
    while len(closed) < len(connections) and time.monotonic() - started < seconds:
        for index, connection in enumerate(connections):
            if index in closed:
                continue
            if trickle:
                try:
                    connection.send(b"X")
                except OSError:
                    pass  # closed: recv says what came first
            answer = closed_by_server(connection)
            if answer is not None:
                closed[index] = (time.monotonic() - started, answer)
        time.sleep(0.25)
    return closed


def test_slowloris_clients_are_answered_408_and_closed_after_the_header_timeout(tmp_path: Path) -> None:
    with serving(tmp_path, BLOGIMG_SERVER_HEADER_TIMEOUT="1") as server:
        slow = [connect(server) for _ in range(100)]
        for connection in slow:
            connection.send(HEAD_START + b"X-Slow: ")
        silent = connect(server)  # connects and says nothing at all
        closed = watch(slow, seconds=8, trickle=True)
        closed_silent = watch([silent], seconds=3)
        assert call(server, "GET", "/healthz")[0] == 200  # and it still serves everyone else
    assert len(closed) == len(slow), f"{len(slow) - len(closed)} of {len(slow)} slow clients still connected after 8 s"
    assert max(seconds for seconds, _ in closed.values()) < 4
    assert all(answer.startswith(b"HTTP/1.1 408 Request Timeout") for _, answer in closed.values())
    assert closed_silent and closed_silent[0][1].startswith(b"HTTP/1.1 408")


def test_a_request_whose_head_comes_in_time_is_served(tmp_path: Path) -> None:
    with serving(tmp_path, BLOGIMG_SERVER_HEADER_TIMEOUT="2", BLOGIMG_SERVER_KEEP_ALIVE_TIMEOUT="1") as server:
        connection = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        for byte in HEAD_START + b"\r\n":  # slowly, but whole within the limit
            connection.send(bytes([byte]))
            time.sleep(0.01)
        assert connection.recv(65536).startswith(b"HTTP/1.1 200")
        connection.setblocking(False)
        # Then idle: the keep-alive timeout, not the default 5 s, closes it.
        closed = watch([connection], seconds=4)
    assert closed and closed[0][0] < 2.5 and closed[0][1] == b""


def test_a_client_that_stalls_inside_a_body_is_cut_off(tmp_path: Path) -> None:
    with serving(tmp_path, BLOGIMG_SERVER_BODY_TIMEOUT="1") as server:
        stalled = connect(server)
        stalled.send(b"POST /api/posts HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"markdown\": ")
        closed = watch([stalled], seconds=6)
        assert call(server, "GET", "/healthz")[0] == 200
    assert closed and closed[0][0] < 3.5, "a client 10 bytes into a 100-byte body held its connection for 6 s"


def test_connections_beyond_the_cap_are_answered_503_and_closed(tmp_path: Path) -> None:
    with serving(tmp_path, BLOGIMG_SERVER_MAX_CONNECTIONS="5", BLOGIMG_SERVER_HEADER_TIMEOUT="60") as server:
        held = [connect(server) for _ in range(5)]
        time.sleep(0.3)
        extra = [connect(server) for _ in range(3)]
        refused = watch(extra, seconds=3)
        assert all(closed_by_server(connection) is None for connection in held)  # the first five stay
        for connection in held:
            connection.close()
        time.sleep(0.3)
        assert call(server, "GET", "/healthz")[0] == 200  # room again once they are gone
    assert len(refused) == 3, f"{3 - len(refused)} connections beyond the cap of 5 were kept open"
    assert all(answer.startswith(b"HTTP/1.1 503 Service Unavailable") for _, answer in refused.values())
    assert max(seconds for seconds, _ in refused.values()) < 1
