"""A webhook receiver on loopback: a real HTTP server that records what arrives and answers as scripted.

``answers`` is consumed one per request (an int is a status code, ``HOLD`` keeps the request open
without an answer until ``release()``); when it runs out, 200. ``accepted`` holds the requests
answered 2xx, ``received`` every request, each as (headers, body). With ``refuse_first=n`` the
first n attempts of every message (by ``webhook-id``) are answered 503 before ``answers`` is asked.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOLD = "hold"


class WebhookReceiver:
    def __init__(self, answers: Iterable[int | str] = (), *, port: int = 0, refuse_first: int = 0) -> None:
        self.answers: list[int | str] = list(answers)
        self.attempts: Counter[str] = Counter()  #: webhook-id → requests received
        self.received: list[tuple[dict[str, str], str]] = []
        self.accepted: list[tuple[dict[str, str], str]] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the standard library's name
                body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
                headers = {name.lower(): value for name, value in self.headers.items()}
                with receiver._lock:
                    receiver.received.append((headers, body))
                    message_id = headers.get("webhook-id", "")
                    receiver.attempts[message_id] += 1
                    if receiver.attempts[message_id] <= refuse_first:
                        answer: int | str = 503
                    else:
                        answer = receiver.answers.pop(0) if receiver.answers else 200
                if answer == HOLD:
                    receiver._released.wait(60)
                    self.close_connection = True
                    return  # no answer at all: the sender is cut off (or times out)
                assert isinstance(answer, int)
                self.send_response(answer)
                self.send_header("content-length", "0")
                self.end_headers()
                if 200 <= answer < 300:
                    with receiver._lock:
                        receiver.accepted.append((headers, body))

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the standard library's name
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()

    def release(self) -> None:
        self._released.set()

    def accepted_ids(self) -> list[str]:
        with self._lock:
            return [headers["webhook-id"] for headers, _ in self.accepted]
