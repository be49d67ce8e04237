"""Scale-out with no shared disk: PostgreSQL and an S3 server are all the processes share.

Two ``blogimg worker`` processes, each in a folder of its own, and a ``blogimg serve --no-worker``
take 200 jobs enqueued through the API; one worker is killed with SIGKILL half-way. Every image
must succeed exactly once, every URL the API gives must answer 200, and after cleanup's grace
period the bucket must hold exactly the objects the catalogue refers to.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.fakes.moto_s3 import create_bucket, environment, s3_client, start_moto
from tests.hostile import Server, call, serving
from tests.postgres import postgres_database
from tests.support import REPOSITORY_ROOT, run_cli

IMAGES = 200
PER_REQUEST = 50  #: the API's limit on prompts per request
LEASE_SECONDS = "2"


@pytest.fixture
def moto_endpoint() -> Iterator[str]:
    endpoint, stop = start_moto()
    try:
        yield endpoint
    finally:
        stop()


def _settings(database_url: str, endpoint: str, bucket: str) -> dict[str, str]:
    return environment(endpoint, bucket) | {
        "BLOGIMG_DATABASE_URL": database_url, "BLOGIMG_LEASE_SECONDS": LEASE_SECONDS,
        "BLOGIMG_VARIANT_WIDTHS": "48", "BLOGIMG_VARIANT_FORMATS": "webp", "BLOGIMG_AVIF_EFFORT": "0",
        "BLOGIMG_TEST_FAKE_LATENCY": "0.1", "BLOGIMG_SHUTDOWN_GRACE": "10", "BLOGIMG_BREAKER_THRESHOLD": "0",
    }


def _start_worker(directory: Path, settings: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    directory.mkdir()
    child = {key: value for key, value in os.environ.items() if not key.startswith(("BLOGIMG_", "AWS_"))}
    child.update(settings, PYTHONPATH=str(REPOSITORY_ROOT), COLUMNS="200")
    return subprocess.Popen(
        [sys.executable, "-m", "blogimg", "worker", "--providers", "tests.fakes.slow_provider:SlowProvider",
         "--concurrency", "4"],
        cwd=directory, env=child, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def _rows(database_url: str, sql: str) -> list[tuple]:  # type: ignore[type-arg]
    import psycopg

    with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://")) as connection:
        return connection.execute(sql).fetchall()


def _succeeded(database_url: str) -> int:
    return int(_rows(database_url, "SELECT count(*) FROM generated_images WHERE status = 'succeeded'")[0][0])


def _wait_for(database_url: str, count: int, workers: list[subprocess.Popen[bytes]], logs: list[Path],
              timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while _succeeded(database_url) < count:
        assert time.monotonic() < deadline, (f"only {_succeeded(database_url)} of {count} images succeeded in "
                                             f"{timeout:.0f} s: " + " | ".join(log.read_text()[-1500:] for log in logs))
        assert any(worker.poll() is None for worker in workers), "every worker has exited"
        time.sleep(0.2)


def _enqueue(server: Server) -> list[int]:
    image_ids: list[int] = []
    for start in range(0, IMAGES, PER_REQUEST):
        status, batch = call(server, "POST", "/api/images/generate", {
            "prompts": [{"prompt": f"a lighthouse on a scale-out night, number {n}", "kind": "inline"}
                        for n in range(start, start + PER_REQUEST)]}, timeout=60)
        assert status == 202, batch
        image_ids += batch["image_ids"]
    return image_ids


def test_two_workers_and_an_api_node_share_nothing_but_postgresql_and_s3(tmp_path: Path, moto_endpoint: str) -> None:
    bucket = create_bucket(moto_endpoint)
    logs = [tmp_path / "worker-0.log", tmp_path / "worker-1.log"]
    with postgres_database() as database_url:
        settings = _settings(database_url, moto_endpoint, bucket)
        api_folder = tmp_path / "api"
        api_folder.mkdir()
        with serving(api_folder, **settings) as server:
            workers = [_start_worker(tmp_path / f"worker-{n}", settings, logs[n]) for n in range(2)]
            killed, survivor = workers
            try:
                image_ids = _enqueue(server)
                assert len(set(image_ids)) == IMAGES
                _wait_for(database_url, IMAGES // 2, workers, logs)
                killed.send_signal(signal.SIGKILL)
                _wait_for(database_url, IMAGES, [survivor], logs)
                survivor.send_signal(signal.SIGTERM)
                assert survivor.wait(timeout=60) == 0, logs[1].read_text()[-3000:]
            finally:
                for worker in workers:
                    if worker.poll() is None:
                        os.killpg(worker.pid, signal.SIGKILL)
                        worker.wait()
            assert killed.returncode == -signal.SIGKILL

            # Every image succeeded, and exactly once: one "succeeded" event each, never a second completion.
            assert _rows(database_url, "SELECT status, count(*) FROM generated_images GROUP BY status") == \
                [("succeeded", IMAGES)]
            completions = _rows(database_url, "SELECT image_id, count(*) FROM image_events "
                                              "WHERE status = 'succeeded' GROUP BY image_id")
            assert len(completions) == IMAGES and {count for _, count in completions} == {1}
            # Both workers really worked, and the killed one's jobs were taken over after its lease.
            owners = {owner.rsplit(":", 1)[-1] for (owner,) in _rows(
                database_url, "SELECT DISTINCT lease_owner FROM generation_attempts WHERE lease_owner IS NOT NULL")}
            assert {str(killed.pid), str(survivor.pid)} <= owners, owners

            # Every URL the API gives answers 200 with the image, straight from the bucket.
            urls = []
            for image_id in image_ids:
                status, image = call(server, "GET", f"/api/images/{image_id}")
                assert status == 200 and image["status"] == "succeeded", image
                urls += [image["url"], image["thumbnail_url"], *(variant["url"] for variant in image["variants"])]
            assert all(url.startswith(f"{moto_endpoint}/{bucket}/") for url in urls), urls[:3]
            with httpx.Client(timeout=30) as client:
                answers = {url: client.get(url) for url in urls}
            assert {url: response.status_code for url, response in answers.items() if response.status_code != 200} == {}
            assert all(response.content for response in answers.values())

        # After the grace period, cleanup leaves exactly what the catalogue refers to.
        referenced = {key for (key,) in _rows(database_url, "SELECT storage_key FROM image_variants")}
        referenced |= {key for row in _rows(database_url, "SELECT storage_key, thumbnail_key FROM generated_images")
                       for key in row if key}
        time.sleep(2)
        cleaned = run_cli("cleanup", "--apply", "--grace-seconds", "1", data=tmp_path / "cleanup", cwd=api_folder,
                          timeout=120, **settings)
        assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
        in_bucket = {item["Key"] for page in s3_client(moto_endpoint).get_paginator("list_objects_v2")
                     .paginate(Bucket=bucket) for item in page.get("Contents", [])}
        assert in_bucket == referenced, (sorted(in_bucket - referenced)[:5], sorted(referenced - in_bucket)[:5])

    # No process kept anything in its folder that another would need: nothing but what serve's
    # default settings make (an empty local folder is never created for s3).
    leftovers = [path for folder in ("api", "worker-0", "worker-1") for path in (tmp_path / folder).rglob("*")
                 if path.is_file()]
    assert leftovers == []
