"""Benchmark 4: GET /api/images/search (a page of 20 from 1M rows) in requests/s, blogimg's app
against a minimal Starlette app running the same statements (bench/api_apps.py).

Both are served by uvicorn with the same settings (one process, no access log), on the same
SQLite catalogue, at the same time on two loopback ports; the load comes from a separate process
(bench/load.py, 8 keep-alive connections, closed loop), alternating between the two servers five
times. The ratio is the median of the per-run ratios of requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from bench.common import ROOT, Comparison, Measure, write_result

DATA = ROOT / "bench" / ".data"
PATH = "/api/images/search?limit=20"
NOTES: list[str] = []


def catalogue(rows: int) -> Path:
    """The SQLite catalogue with ``rows`` images: bench/database.py's, or built here the same way."""
    path = DATA / f"catalogue-{rows}.sqlite"
    if not path.is_file():
        from bench.database import populate
        from blogimg.db.catalog import Catalog
        from blogimg.db.engine import open_database

        async def build() -> None:
            engine, sessions = await open_database(f"sqlite+aiosqlite:///{path}.partial")
            try:
                await populate(Catalog(engine, sessions), rows)
            finally:
                await engine.dispose()

        DATA.mkdir(parents=True, exist_ok=True)
        Path(f"{path}.partial").unlink(missing_ok=True)
        asyncio.run(build())
        Path(f"{path}.partial").rename(path)  # only a finished catalogue is ever reused
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def server(factory: str, database: Path, storage: Path):  # type: ignore[no-untyped-def]
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BLOGIMG_")} | {
        "BLOGIMG_DATABASE_URL": f"sqlite+aiosqlite:///{database}", "BLOGIMG_STORAGE_PATH": str(storage),
        "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", f"bench.api_apps:{factory}", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1", "--log-level", "warning", "--no-access-log"],
        cwd=ROOT, env=environment)
    url = f"http://127.0.0.1:{port}{PATH}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as answer:
                    body = json.loads(answer.read())
                    assert len(body["items"]) == 20, body
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"bench.api: the {factory} server did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def load(url: str, seconds: float) -> dict:
    output = subprocess.run([sys.executable, "-m", "bench.load", url, "--seconds", str(seconds)],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout
    result = json.loads(output)
    if result["errors"] or not result["requests"]:
        raise SystemExit(f"bench.api: {url} answered errors: {result['first_error']}")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="2,000 rows, one short run: proves it works")
    arguments = parser.parse_args(argv)
    rows, runs, seconds = (2_000, 1, 1.0) if arguments.tiny else (1_000_000, 5, 3.0)
    database = catalogue(rows)
    results: dict[str, list[dict]] = {"blogimg": [], "minimal": []}
    with tempfile.TemporaryDirectory() as storage, \
            server("blogimg", database, Path(storage)) as ours, server("minimal", database, Path(storage)) as theirs:
        for url in (ours, theirs):
            load(url, min(seconds, 1.0))  # warm both: imports, caches, the first queries
        for _ in range(runs):
            results["blogimg"].append(load(ours, seconds))
            results["minimal"].append(load(theirs, seconds))
    ratio = statistics.median(o["rps"] / b["rps"] for o, b in zip(results["blogimg"], results["minimal"], strict=True))
    rate = {side: Measure(side, "req/s", [r["rps"] for r in results[side]]) for side in results}
    p50 = {side: Measure(side, "ms", [r["p50_ms"] for r in results[side]]) for side in results}
    comparisons = [
        Comparison(f"GET {PATH}, {rows:,} rows, SQLite, 8 connections", ours=rate["blogimg"].summary(),
                   baseline=rate["minimal"].summary(), ratio=ratio,
                   ratio_meaning="blogimg req/s ÷ minimal Starlette's", target="≥ 0.7", met=ratio >= 0.7),
        Comparison("median latency under that load", ours=p50["blogimg"].summary(), baseline=p50["minimal"].summary(),
                   ratio=p50["blogimg"].median / p50["minimal"].median, ratio_meaning="blogimg p50 ÷ minimal's"),
    ]
    path = write_result("api", "API throughput against a minimal Starlette app", comparisons,
                        {"runs": results, "notes": NOTES}, tiny=arguments.tiny)
    print(f"api: {ratio:.2f}× a minimal Starlette app's requests/s → {path}")


if __name__ == "__main__":
    main()
