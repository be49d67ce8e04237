"""``serve``'s embedded worker outlives a passing full disk: it says so at once, pauses, and carries on."""

from __future__ import annotations

import logging
import time

import pytest
from starlette.testclient import TestClient

from blogimg.api import app as api_app
from blogimg.config import Settings
from blogimg.testing import FakeProvider
from tests.integration.test_worker_outages import FullDisk
from tests.support import AUTH, registry_with


def test_the_embedded_worker_pauses_on_a_full_disk_and_makes_the_image_after(
        api_settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(api_app, "EMBEDDED_RESUME_AFTER", 0.3)
    storage, provider = FullDisk(), FakeProvider("fake")
    app = api_app.create_app(api_settings.model_copy(update={"providers": ["fake"]}), storage=storage,
                             run_worker=True, registry=registry_with(provider))
    with caplog.at_level(logging.INFO, logger="blogimg"), TestClient(app, headers=AUTH) as client:
        batch = client.post("/api/images/generate", headers=AUTH,
                            json={"prompts": [{"prompt": "a lighthouse at dawn", "kind": "cover"}]})
        assert batch.status_code == 202, batch.text
        image_id = batch.json()["image_ids"][0]
        deadline = time.monotonic() + 15
        while (image := client.get(f"/api/images/{image_id}").json())["status"] != "succeeded":
            assert time.monotonic() < deadline, image
            time.sleep(0.05)
        errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert storage.full == 0 and len(provider.calls) == 2  # the first image met the full disk
    assert len(errors) == 1 and "is full" in errors[0], errors
