"""PostgreSQL ending blogimg's connections mid-batch (a restart, a failover, an administrator's
``pg_terminate_backend``): every image is still made, none fails, and the run exits 0.

The server really ends the sessions: a helper connection terminates every other backend of the
test's database, again and again, while ``blogimg generate`` runs as a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

from blogimg.config import Settings
from tests.support import BLOGIMG, REPOSITORY_ROOT, cli_environment, write_posts

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

TERMINATE_OTHERS = ("SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()")


class Terminator(threading.Thread):
    """Ends every other session on the database every ``interval`` seconds until stopped."""

    def __init__(self, url: str, interval: float) -> None:
        super().__init__(daemon=True)
        self.url, self.interval = url, interval
        self.stopped = threading.Event()
        self.terminated = 0

    def run(self) -> None:
        import psycopg
        from sqlalchemy.engine import make_url

        plain = make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(plain, autocommit=True) as connection:
            while not self.stopped.wait(self.interval):
                row = connection.execute(TERMINATE_OTHERS).fetchone()
                self.terminated += row[0] if row else 0

    def __enter__(self) -> Terminator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopped.set()
        self.join(timeout=10)


def subprocess_environment(settings: Settings, data: Path) -> dict[str, str]:
    # The tests package (for the fake provider) after whatever PYTHONPATH says, so a run against
    # another copy of blogimg (PYTHONPATH=…/src) keeps that copy.
    path = [part for part in os.environ.get("PYTHONPATH", "").split(os.pathsep) if part]
    return cli_environment(
        data, BLOGIMG_DATABASE_URL=settings.database_url, PYTHONPATH=os.pathsep.join([*path, str(REPOSITORY_ROOT)]),
        BLOGIMG_TEST_FAKE_LATENCY="0.05", BLOGIMG_VARIANT_WIDTHS="48", BLOGIMG_VARIANT_FORMATS="webp",
        BLOGIMG_AVIF_EFFORT="0", BLOGIMG_BREAKER_THRESHOLD="0", BLOGIMG_RETRY_DELAY="0.01",
    )


def image_statuses(url: str) -> dict[str, int]:
    import psycopg
    from sqlalchemy.engine import make_url

    plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain) as connection:
        rows = connection.execute(
            "SELECT status || ':' || coalesce(error_code, ''), count(*) FROM generated_images GROUP BY 1").fetchall()
    return {key: count for key, count in rows}


def test_generate_makes_every_image_while_the_server_keeps_ending_its_connections(
        tmp_path: Path, settings: Settings) -> None:
    posts = write_posts(tmp_path / "posts", 8, markers=2)  # 24 images
    environment = subprocess_environment(settings, tmp_path / "data")
    subprocess.run([*BLOGIMG, "init"], cwd=tmp_path, env=environment, check=True, capture_output=True, timeout=120)
    with Terminator(settings.database_url, interval=0.1) as terminator:
        result = subprocess.run(
            [*BLOGIMG, "generate", str(posts), "--providers", "tests.fakes.slow_provider:SlowProvider",
             "--max-concurrent", "4"],
            cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=240)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Traceback" not in output
    assert image_statuses(settings.database_url) == {"succeeded:": 24}, output[-3000:]
    assert terminator.terminated >= 5, "the server ended too few sessions for this to test anything"
