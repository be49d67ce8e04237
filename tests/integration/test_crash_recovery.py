"""SIGKILL in the middle of a batch: the database stays consistent and a re-run finishes the rest."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from tests.support import (
    BLOGIMG,
    cli_environment,
    query,
    referenced_keys,
    stored_files,
    write_posts,
)

FAST = {"BLOGIMG_COVER_SIZE": "640x400", "BLOGIMG_INLINE_SIZE": "400x400", "BLOGIMG_VARIANT_WIDTHS": "320",
        "BLOGIMG_AVIF_EFFORT": "0", "BLOGIMG_MAX_CONCURRENT": "3"}


def wait_for(process: subprocess.Popen, database: Path, minimum: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"generate ended early ({process.returncode}): {process.stderr.read()}")
        if database.exists():
            try:
                done = query(database, "SELECT count(*) FROM generated_images WHERE status = 'succeeded'")[0][0]
            except Exception:  # tables not created yet
                done = 0
            if done >= minimum:
                return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {minimum} images succeeded within {timeout} s")


def test_sigkill_mid_batch_then_rerun_finishes_without_duplicates(tmp_path: Path) -> None:
    posts, data = tmp_path / "posts", tmp_path / "data"
    write_posts(posts, 14, markers=2, name="story-{number}", title="Story number {number}",
                prompt="scene {marker} of story {number}", tags=())
    database = data / "blogimg.db"
    environment = cli_environment(data, **FAST)
    process = subprocess.Popen([*BLOGIMG, "generate", str(posts)], cwd=tmp_path, env=environment,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(process, database, minimum=4)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL

    # Consistent after the kill: the file is sound, and every succeeded row is complete.
    assert query(database, "PRAGMA integrity_check") == [("ok",)]
    total = 14 * 3
    statuses = dict(query(database, "SELECT status, count(*) FROM generated_images GROUP BY status"))
    assert sum(statuses.values()) == total
    succeeded_before = statuses.get("succeeded", 0)
    assert 4 <= succeeded_before < total, statuses  # really killed mid-batch
    assert query(database, "SELECT count(*) FROM generated_images WHERE status = 'succeeded' AND "
                           "(lease_token IS NOT NULL OR storage_key IS NULL OR thumbnail_key IS NULL)") == [(0,)]
    assert referenced_keys(database) <= stored_files(data / "images")  # files before rows
    calls_before = query(database, "SELECT count(*) FROM generation_attempts")[0][0]
    done_ids = {row[0] for row in query(database, "SELECT id FROM generated_images WHERE status = 'succeeded'")}

    rerun = subprocess.run([*BLOGIMG, "generate", str(posts)], cwd=tmp_path, env=environment,
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr

    assert query(database, "SELECT status, count(*) FROM generated_images GROUP BY status") == [("succeeded", total)]
    assert query(database, "SELECT count(*) FROM image_prompts")[0][0] == total
    assert query(database, "SELECT count(*), count(DISTINCT prompt_id) FROM generated_images") == [(total, total)]
    assert query(database, "SELECT count(*) FROM (SELECT image_id, format, width FROM image_variants "
                           "GROUP BY image_id, format, width HAVING count(*) > 1)") == [(0,)]
    # Only the unfinished images were generated again; finished ones were not touched.
    new_calls = query(database, "SELECT image_id FROM generation_attempts ORDER BY id")[calls_before:]
    assert len(new_calls) == total - succeeded_before
    assert not {row[0] for row in new_calls} & done_ids
    # No file was stored twice or left behind: what is on disk is exactly what the rows name.
    assert stored_files(data / "images") == referenced_keys(database)
