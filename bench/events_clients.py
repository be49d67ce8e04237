"""Many Server-Sent Events clients on raw asyncio sockets, for bench/events.py (and its tests).

    python -m bench.events_clients http://127.0.0.1:PORT/api/events --clients 500

Opens the connections, prints ``ready`` once every one has its ``retry:`` line (the server has
subscribed it by then), then reads one line from stdin, ``BATCH_ID EXPECTED``, waits until every
client has received EXPECTED events of that batch (or ``--timeout`` passes), and prints one JSON
line: per client, the number of the batch's events received and a digest of their ids in order.
No HTTP library: 500 connections must cost the two cores as little as they can.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class ReceivedEvent:
    id: int
    data: dict


@dataclass
class SseClient:
    """One streaming GET, its chunked body parsed into events as they come."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    status: int = 0
    retry_seen: bool = False
    events: list[ReceivedEvent] = field(default_factory=list)
    comments: int = 0
    ended: bool = False  #: the server ended the stream (the last chunk, or the connection closed)
    _text: str = ""

    @classmethod
    async def connect(cls, url: str, headers: dict[str, str] | None = None,
                      receive_buffer: int | None = None) -> SseClient:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        sock = None
        if receive_buffer is not None:
            # A small window before connecting: a client that does not read fills it quickly.
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (host, port))
            # And asyncio's own buffer as small: it reads ahead until twice its limit.
            reader, writer = await asyncio.open_connection(sock=sock, limit=receive_buffer)
        else:
            reader, writer = await asyncio.open_connection(host, port, limit=2**20)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        lines = [f"GET {target} HTTP/1.1", f"Host: {host}:{port}", "Accept: text/event-stream"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        return cls(reader, writer)

    async def read_head(self) -> int:
        status = await self.reader.readline()
        self.status = int(status.split()[1]) if status else 0
        while await self.reader.readline() not in (b"\r\n", b""):
            pass
        return self.status

    async def read_chunk(self) -> bool:
        """Read one chunk of the body and parse what it completes; False once the stream has ended."""
        size_line = await self.reader.readline()
        if not size_line:
            self.ended = True
            return False
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            self.ended = True
            return False
        self._text += (await self.reader.readexactly(size + 2))[:-2].decode()
        while "\n\n" in self._text:
            block, self._text = self._text.split("\n\n", 1)
            self._parse(block)
        return True

    def _parse(self, block: str) -> None:
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                self.comments += 1
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        if "retry" in fields:
            self.retry_seen = True
        if fields.get("event") == "image":
            self.events.append(ReceivedEvent(int(fields["id"]), json.loads(fields["data"])))

    async def read_until(self, done: Callable[[], bool]) -> None:
        """Read chunks until ``done()`` is true or the stream ends."""
        while not done() and await self.read_chunk():
            pass

    def subscribed(self) -> bool:
        """The ``retry:`` line has come: the server subscribed this stream before it sent it."""
        return self.retry_seen

    def close(self) -> None:
        self.writer.close()


def digest(ids: list[int]) -> str:
    return hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()[:16]


async def run(url: str, clients: int, timeout: float) -> dict:
    connected: list[SseClient] = []
    for start in range(0, clients, 50):  # in waves: a listen backlog is not 500 deep everywhere
        wave = await asyncio.gather(*(SseClient.connect(url) for _ in range(start, min(clients, start + 50))))
        connected += wave
        await asyncio.gather(*(client.read_head() for client in wave))
        await asyncio.gather(*(client.read_until(client.subscribed) for client in wave))
    if any(client.status != 200 for client in connected):
        raise SystemExit(f"bench.events_clients: answers {sorted({c.status for c in connected})}")
    print("ready", flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    batch_id, expected = map(int, line.split())

    def batch_events(client: SseClient) -> list[int]:
        return [event.id for event in client.events if event.data["batch_id"] == batch_id]

    async def follow(client: SseClient) -> None:
        await client.read_until(lambda: len(batch_events(client)) >= expected)

    try:
        await asyncio.wait_for(asyncio.gather(*(follow(client) for client in connected)), timeout)
    except TimeoutError:
        pass
    result = {"clients": [{"count": len(ids := batch_events(client)), "digest": digest(ids),
                           "ended": client.ended} for client in connected]}
    for client in connected:
        client.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=120.0)
    arguments = parser.parse_args(argv)
    json.dump(asyncio.run(run(arguments.url, arguments.clients, arguments.timeout)), sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
