"""BLOGIMG_LOG_FORMAT=json: every stderr line is a JSON object; job lines say which image, provider,
attempt and how long; every stored object has its audit line with the right SHA-256, and deletes
are logged too."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from blogimg import logs
from blogimg.api.app import create_app
from blogimg.config import Settings
from tests.support import query, run_cli, stored_files, write_posts


def test_a_generate_run_logs_json_lines_with_its_jobs_and_an_audit_trail(tmp_path: Path) -> None:
    data = tmp_path / "data"
    posts = write_posts(tmp_path / "posts", 1, markers=1)  # a cover and an inline image
    run = run_cli("generate", str(posts), data=data, cwd=tmp_path, BLOGIMG_LOG_FORMAT="json",
                  BLOGIMG_PROVIDERS="card", BLOGIMG_VARIANT_WIDTHS="48,80", BLOGIMG_AVIF_EFFORT="0")
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stderr.splitlines()]  # each one JSON, or this fails
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)

    images = {image_id for (image_id,) in query(data / "blogimg.db", "SELECT id FROM generated_images")}
    batch = {batch_id for (batch_id,) in query(data / "blogimg.db", "SELECT batch_id FROM generated_images")}
    calls = [line for line in lines if line["logger"] == "blogimg.pipeline.jobs" and "attempt" in line]
    assert {line["image_id"] for line in calls} == images
    assert all(line["provider"] == "card" and line["attempt"] == 1 and line["duration_ms"] >= 0
               and line["outcome"] == "ok" and line["batch_id"] in batch for line in calls)
    ended = [line for line in lines if line["message"] == "image succeeded"]
    assert {line["image_id"] for line in ended} == images and all(line["duration_ms"] >= 0 for line in ended)

    puts = {line["key"]: line for line in lines if line.get("operation") == "put"}
    on_disk = stored_files(data / "images")
    assert set(puts) == on_disk  # every stored object has its audit line
    for key, line in puts.items():
        content = (data / "images" / key).read_bytes()
        assert line["sha256"] == hashlib.sha256(content).hexdigest() and line["bytes"] == len(content)
        assert line["image_id"] in images and line["storage"] == "local"
    # Nothing of the posts' text reaches a log line.
    assert "Lorem" not in run.stderr and "markdown" not in run.stderr


def test_text_stays_the_default_and_bad_settings_fail_as_one_json_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    run = run_cli("stats", data=data, cwd=tmp_path, BLOGIMG_LOG_FORMAT="json", BLOGIMG_MAX_CONCURRENT="0")
    assert run.returncode != 0 and "{" not in run.stderr  # settings never loaded: the format is still text
    run = run_cli("search", "x", "--status", "nonsense", data=data, cwd=tmp_path, BLOGIMG_LOG_FORMAT="json")
    assert run.returncode != 0
    for line in run.stderr.splitlines():
        assert line.startswith("{") or line.startswith("error:") or line.startswith("Usage")


def test_deleting_an_image_logs_each_storage_delete(tmp_path: Path, settings: Settings,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    audit = settings.model_copy(update={"storage_path": tmp_path / "images"})
    write_posts(tmp_path / "posts", 1, markers=0)
    caplog.set_level(logging.INFO, logger="blogimg.storage.audit")
    with TestClient(create_app(audit, run_worker=True)) as client:  # storage from the factory: audited
        created = client.post("/api/images/generate", json={"prompts": [{"prompt": "a heron"}]}).json()
        image_id = created["image_ids"][0]
        for _ in range(400):
            if client.get(f"/api/images/{image_id}").json()["status"] in ("succeeded", "failed"):
                break
            time.sleep(0.05)
        assert client.get(f"/api/images/{image_id}").json()["status"] == "succeeded"
        keys = {path.relative_to(tmp_path / "images").as_posix() for path in (tmp_path / "images").rglob("*")
                if path.is_file()}
        assert client.delete(f"/api/images/{image_id}").status_code in (200, 204)
    formatter = logs.JsonFormatter()
    lines = [json.loads(formatter.format(record)) for record in caplog.records if record.name == "blogimg.storage.audit"]
    puts = {line["key"] for line in lines if line["operation"] == "put"}
    deletes = {line["key"] for line in lines if line["operation"] == "delete"}
    assert keys and puts == keys and deletes == keys
