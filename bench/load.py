"""A small HTTP/1.1 load generator for bench/api.py, run as its own process.

    python -m bench.load http://127.0.0.1:PORT/path --seconds 4 --connections 8

Keep-alive connections each send the next request as soon as the last answer is read (a closed
loop), for the given time. Prints one JSON line: requests, errors, seconds, requests/s, p50 and
p99 latency in ms. Written on asyncio streams with no HTTP library, so the client costs both
servers the same and as little as it can.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from urllib.parse import urlsplit


async def connection(host: str, port: int, target: str, deadline: float, latencies: list[float],
                     errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    request = f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\n\r\n".encode()
    try:
        while (started := time.perf_counter()) < deadline:
            writer.write(request)
            status = await reader.readline()
            length = None
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            if length is None:
                raise RuntimeError("the server answered without Content-Length")
            await reader.readexactly(length)
            if not status.startswith(b"HTTP/1.1 200"):
                errors.append(status.decode("latin-1").strip())
                continue
            latencies.append(time.perf_counter() - started)
    finally:
        writer.close()


async def run(url: str, seconds: float, connections: int) -> dict:
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    latencies: list[float] = []
    errors: list[str] = []
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(connection(parts.hostname or "127.0.0.1", parts.port or 80, target, deadline,
                                      latencies, errors) for _ in range(connections)))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies) or [float("nan")]
    return {"requests": len(latencies), "errors": len(errors), "first_error": errors[0] if errors else None,
            "seconds": elapsed, "rps": len(latencies) / elapsed,
            "p50_ms": statistics.median(ordered) * 1000, "p99_ms": ordered[int(0.99 * (len(ordered) - 1))] * 1000}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=8)
    arguments = parser.parse_args(argv)
    json.dump(asyncio.run(run(arguments.url, arguments.seconds, arguments.connections)), sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
