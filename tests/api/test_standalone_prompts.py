"""Prompts sent without a post are drawn from their own text, and each variation is its own image."""

from __future__ import annotations

import asyncio

from starlette.testclient import TestClient

from blogimg.api.app import create_app
from blogimg.config import Settings
from blogimg.domain import Status
from blogimg.pipeline.runtime import open_runtime
from blogimg.storage import MemoryStorage
from tests.support import AUTH


def drain_with_cards(settings: Settings, storage: MemoryStorage) -> None:
    async def drain() -> None:
        async with open_runtime(settings, providers=["card"], storage=storage) as runtime:
            worker = runtime.worker()
            worker.poll_interval = 0.05
            task = asyncio.create_task(worker.run())
            while (counts := await runtime.database.reporting.status_counts())[Status.QUEUED] + counts[Status.RUNNING]:
                await asyncio.sleep(0.05)
            worker.stop()
            await task

    asyncio.run(drain())


def test_an_api_prompt_is_its_own_subject_and_variations_differ(api_settings: Settings) -> None:
    storage = MemoryStorage()
    with TestClient(create_app(api_settings, storage=storage), headers=AUTH) as client:
        batch = client.post("/api/images/generate", headers=AUTH, json={
            "prompts": [{"prompt": "a lighthouse at dawn", "kind": "cover"}], "options": {"variations": 2}}).json()
        drain_with_cards(api_settings, storage)
        images = [client.get(f"/api/images/{image_id}").json() for image_id in batch["image_ids"]]
    assert [image["status"] for image in images] == ["succeeded", "succeeded"]
    for image in images:
        assert "a lighthouse at dawn" in image["alt_text"], image["alt_text"]
        assert "requested through the API" not in image["alt_text"]
    masters = [image["url"].removeprefix("memory://") for image in images]
    assert masters[0] != masters[1]  # content-addressed: different keys are different pictures
    assert storage.files[masters[0]] != storage.files[masters[1]]
