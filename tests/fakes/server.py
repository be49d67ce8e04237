"""A loopback HTTP server for fakes of provider APIs: real sockets, real HTTP, every request kept.

Each fake decides a :class:`Reply` per request; the server records the request first, so a test
can compare the fake's own count of requests with what blogimg's ledger says it sent.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Reply:
    status: int = 200
    body: bytes | dict | list | str = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  #: seconds to wait before answering (for client timeouts)
    unsized: bool = False  #: send no Content-Length; the body ends when the connection closes
    reset: bool = False  #: drop the connection without answering (a connection reset)

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, dict | list):
            return json.dumps(self.body).encode(), "application/json"
        if isinstance(self.body, str):
            return self.body.encode(), "application/json"  # e.g. deliberately malformed JSON
        return self.body, self.headers.get("Content-Type", "application/octet-stream")


class LoopbackServer:
    """Serves ``handle(request) -> Reply`` on 127.0.0.1 in a background thread."""

    def __init__(self, handle: Callable[[Received], Reply]) -> None:
        self.handle = handle
        self.requests: list[Received] = []
        self.connections = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                with server._lock:
                    server.connections += 1
                super().setup()

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                received = Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                                    self.rfile.read(length) if length else b"")
                with server._lock:
                    server.requests.append(received)
                reply = server.handle(received)
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.reset:
                    # SO_LINGER 0: close() sends RST, as a crashed load balancer would.
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    return
                body, content_type = reply.encoded()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.headers.get("Content-Type", content_type))
                    if reply.unsized:  # body runs until the connection closes: no length to trust
                        self.send_header("Connection", "close")
                        self.close_connection = True
                    else:
                        self.send_header("Content-Length", str(len(body)))
                    for name, value in reply.headers.items():
                        if name.lower() not in {"content-type", "content-length"}:
                            self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test); nothing to tell it

            do_GET = do_POST = _serve

            def log_message(self, format: str, *args: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def count(self, predicate: Callable[[Received], bool] = lambda request: True) -> int:
        with self._lock:
            return sum(1 for request in self.requests if predicate(request))

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
