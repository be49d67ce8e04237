"""/metrics parses with prometheus-client's own parser and carries every series, with sane values.

Images are made by a real worker with FakeProvider (one transient failure, then successes), so
the numbers come from the rollups, the triggers of migration 0012 and the worker's circuit
reports; a webhook delivery and an alert are written as their owners write them. Budgets and a
storage limit are set, so their gauges are exported.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy import func, select, text
from starlette.testclient import TestClient

from blogimg.config import Settings
from blogimg.db import alert_measures
from blogimg.db.database import Database
from blogimg.db.metric_counts import compact
from blogimg.db.operations_tables import Alert, WebhookDelivery, WebhookEndpoint
from blogimg.db.tables import GeneratedImage, ImageVariant, utcnow
from blogimg.domain import Outcome, Status
from blogimg.pipeline.runtime import open_runtime
from blogimg.storage import MemoryStorage
from blogimg.testing import FakeProvider
from tests.support import API_KEY, AUTH, READ_KEY, make_images, on_both_engines

pytestmark = on_both_engines
LIMITS = {"budget_daily_usd": 5.0, "budget_monthly_usd": 50.0, "storage_limit_bytes": 10**9}


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"api_keys": [API_KEY], "api_read_keys": [READ_KEY], **LIMITS})


def scrape(client: TestClient) -> dict[str, list[Sample]]:
    answer = client.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return {family.name: family.samples for family in text_string_to_metric_families(answer.text)}


def value(samples: list[Sample], name: str, **labels: str) -> float:
    found = [sample.value for sample in samples if sample.name == name
             and all(sample.labels.get(key) == wanted for key, wanted in labels.items())]
    assert len(found) == 1, (name, labels, samples)
    return found[0]


async def _catalogue_rows(settings: Settings) -> tuple[int, dict[str, tuple[int, int]], list[int]]:
    database = await Database.open(settings.database_url)
    try:
        async with database.sessions() as session:
            succeeded = await session.scalar(select(func.count()).where(GeneratedImage.status == "succeeded"))
            stored = {row[0]: (int(row[1]), int(row[2])) for row in await session.execute(
                select(ImageVariant.format, func.count(), func.sum(ImageVariant.bytes)).group_by(ImageVariant.format))}
            imaging = list(await session.scalars(select(GeneratedImage.processing_ms)
                                                 .where(GeneratedImage.status == "succeeded")))
            endpoint = WebhookEndpoint(url="https://hooks.example.com/in", secret="whsec_" + "A" * 32, enabled=True,
                                       source="api", created_at=utcnow())
            session.add(endpoint)
            await session.flush()
            for number, status, attempts in ((1, "pending", 0), (2, "pending", 2), (3, "failed", 6)):
                session.add(WebhookDelivery(endpoint_id=endpoint.id, message_id=f"msg_{number}", event_type="image.succeeded",
                                            payload="{}", status=status, attempts=attempts, next_attempt_at=utcnow()))
            await session.flush()
            # Delivered as the sender marks it: an update, which migration 0012's trigger counts.
            delivered = await session.scalar(select(WebhookDelivery).where(WebhookDelivery.message_id == "msg_1"))
            assert delivered is not None
            delivered.status, delivered.attempts, delivered.delivered_at = "delivered", 1, utcnow()
            session.add(Alert(rule="failure_rate", subject="fake", state="firing", value=0.3, threshold=0.2,
                              message="fake fails 30% of its calls", started_at=utcnow(), updated_at=utcnow()))
            await session.commit()
        assert await compact(database.engine) >= 0  # folding never changes a sum
    finally:
        await database.close()
    return int(succeeded or 0), stored, imaging


def test_every_series_parses_with_sane_values(client: TestClient, api_settings: Settings, storage: MemoryStorage) -> None:
    for number in range(3):
        client.post("/api/images/generate", json={"prompts": [{"prompt": f"a fern {number}"}]}, headers=AUTH)
    provider = FakeProvider("fake", script=[Outcome.TRANSIENT], latency=0.01, cost_usd=0.02)
    make_images(api_settings.model_copy(update={"breaker_threshold": 5}), storage, provider)
    succeeded, stored, imaging = asyncio.run(_catalogue_rows(api_settings))
    assert succeeded == 3 and stored and len(imaging) == 3
    client.post("/api/images/generate", json={"prompts": [{"prompt": "still waiting"}]}, headers=AUTH)

    families = scrape(client)

    latency = families["blogimg_provider_call_duration_seconds"]
    assert value(latency, "blogimg_provider_call_duration_seconds_count", provider="fake", model="fake-1") == 4
    buckets = [sample for sample in latency if sample.name.endswith("_bucket")]
    counts = [sample.value for sample in buckets]
    assert buckets[-1].labels["le"] == "+Inf" and counts == sorted(counts) and counts[-1] == 4  # cumulative
    assert 0 < value(latency, "blogimg_provider_call_duration_seconds_sum", provider="fake", model="fake-1") < 60
    calls = families["blogimg_provider_calls"]
    assert value(calls, "blogimg_provider_calls_total", provider="fake", model="fake-1", outcome="ok") == 3
    assert value(calls, "blogimg_provider_calls_total", provider="fake", model="fake-1", outcome="transient") == 1
    assert value(families["blogimg_provider_cost_usd"], "blogimg_provider_cost_usd_total", provider="fake") == 0.06  # a transient failure costs nothing
    assert value(families["blogimg_provider_unknown_cost_calls"], "blogimg_provider_unknown_cost_calls_total") == 0
    images = families["blogimg_images"]
    assert value(images, "blogimg_images", status="succeeded") == 3
    assert (value(images, "blogimg_images", status="queued"), value(images, "blogimg_images", status="running")) == (1, 0)
    assert 0 <= value(families["blogimg_queue_oldest_age_seconds"], "blogimg_queue_oldest_age_seconds") < 300
    # The worker reported its breaker before it stopped; its report is still fresh.
    circuits = families["blogimg_circuit_workers"]
    assert value(circuits, "blogimg_circuit_workers", provider="fake", state="closed") == 1
    assert value(circuits, "blogimg_circuit_workers", provider="fake", state="open") == 0
    for image_format, (files, size) in stored.items():
        assert value(families["blogimg_stored_bytes"], "blogimg_stored_bytes", format=image_format) == size
        assert value(families["blogimg_stored_files"], "blogimg_stored_files", format=image_format) == files
    made = families["blogimg_imaging_duration_seconds"]
    assert value(made, "blogimg_imaging_duration_seconds_count") == 3
    assert value(made, "blogimg_imaging_duration_seconds_sum") == sum(imaging) / 1000  # exact
    deliveries = families["blogimg_webhook_deliveries"]
    assert [value(deliveries, "blogimg_webhook_deliveries", status=status) for status in ("pending", "failed")] == [1, 1]
    assert not [sample for sample in deliveries if sample.labels.get("status") == "delivered"]  # a counter instead
    assert value(families["blogimg_webhook_deliveries_delivered"], "blogimg_webhook_deliveries_delivered_total") == 1
    assert value(families["blogimg_webhook_deliveries_retrying"], "blogimg_webhook_deliveries_retrying") == 1
    assert value(families["blogimg_alerts_firing"], "blogimg_alerts_firing", rule="failure_rate") == 1
    # The configured limits and the spend the budget counts (three ok calls at 0.02 USD, made just now).
    for name, limit in LIMITS.items():
        assert value(families[f"blogimg_{name}"], f"blogimg_{name}") == limit
    assert value(families["blogimg_spent_today_usd"], "blogimg_spent_today_usd") == pytest.approx(0.06)
    assert value(families["blogimg_spent_this_month_usd"], "blogimg_spent_this_month_usd") == pytest.approx(0.06)


def test_a_deleted_image_takes_its_bytes_with_it_and_stale_workers_stop_counting(
        client: TestClient, api_settings: Settings, storage: MemoryStorage) -> None:
    client.post("/api/images/generate", json={"prompts": [{"prompt": "a moth"}]}, headers=AUTH)
    make_images(api_settings, storage, FakeProvider("fake"))
    before = scrape(client)
    assert sum(sample.value for sample in before["blogimg_stored_bytes"]) > 0
    image_id = client.get("/api/images/search").json()["items"][0]["id"]
    assert client.delete(f"/api/images/{image_id}").status_code in (200, 204)
    after = scrape(client)
    assert sum(sample.value for sample in after["blogimg_stored_bytes"]) == 0
    assert sum(sample.value for sample in after["blogimg_stored_files"]) == 0

    async def age_reports() -> None:
        database = await Database.open(api_settings.database_url)
        try:
            async with database.engine.begin() as connection:
                await connection.exec_driver_sql("UPDATE worker_circuits SET updated_at = ?" if "sqlite" in
                                                 api_settings.database_url else
                                                 "UPDATE worker_circuits SET updated_at = %s",
                                                 (utcnow() - timedelta(minutes=5),))
        finally:
            await database.close()

    asyncio.run(age_reports())
    assert scrape(client)["blogimg_circuit_workers"] == []  # a worker gone quiet is not counted


def test_storage_used_is_every_stored_master_and_variant(client: TestClient, api_settings: Settings,
                                                          storage: MemoryStorage) -> None:
    """Storage used, in /metrics and in the storage alert, is the size of the objects in the store (less
    the thumbnails, whose size is recorded nowhere): images made for real by the card provider."""
    for prompt in ("a lighthouse at dusk", "a field of poppies"):
        client.post("/api/images/generate", json={"prompts": [{"prompt": prompt}]}, headers=AUTH)

    async def make_and_measure() -> tuple[int, set[str]]:
        async with open_runtime(api_settings, providers=["card"], storage=storage) as runtime:
            worker = runtime.worker()
            worker.poll_interval = 0.05
            task = asyncio.create_task(worker.run())
            while True:
                counts = await runtime.database.reporting.status_counts()
                if counts[Status.QUEUED] == 0 and counts[Status.RUNNING] == 0:
                    break
                await asyncio.sleep(0.05)
            worker.stop()
            await task
            async with runtime.database.engine.connect() as connection:
                thumbnails = set(await connection.scalars(select(GeneratedImage.thumbnail_key)
                                                          .where(GeneratedImage.status == Status.SUCCEEDED)))
                return await alert_measures.stored_bytes(connection), {key for key in thumbnails if key}

    measured, thumbnails = asyncio.run(make_and_measure())
    assert len(thumbnails) == 2
    in_store = sum(len(data) for key, data in storage.files.items() if key not in thumbnails)
    assert measured == in_store > 0
    stored = scrape(client)["blogimg_stored_bytes"]
    assert sum(sample.value for sample in stored) == in_store
    assert value(stored, "blogimg_stored_bytes", format="master") > 0


def test_metrics_needs_a_key_when_keys_are_set(client_without_key: TestClient) -> None:
    assert client_without_key.get("/metrics").status_code == 401


def test_compacting_what_is_compact_rewrites_nothing(api_settings: Settings) -> None:
    """Every worker compacts every few seconds: on a compact table that must be a no-op on both engines
    (no row deleted and inserted again), and a sum never changes."""

    async def compact_twice() -> tuple[int, int, list[tuple], list[tuple]]:
        database = await Database.open(api_settings.database_url)
        try:
            rows = text("SELECT id, metric, label, count, total FROM metric_counts ORDER BY id")
            async with database.engine.begin() as connection:
                await connection.execute(text(
                    "INSERT INTO metric_counts (metric, label, count, total) VALUES "
                    "('stored_bytes', 'webp', 1, 100), ('stored_bytes', 'webp', 2, 300)"))
            first = await compact(database.engine)
            async with database.engine.connect() as connection:
                before = [tuple(row) for row in await connection.execute(rows)]
            second = await compact(database.engine)
            async with database.engine.connect() as connection:
                after = [tuple(row) for row in await connection.execute(rows)]
            return first, second, before, after
        finally:
            await database.close()

    first, second, before, after = asyncio.run(compact_twice())
    assert first >= 2 and second == 0 and before == after
    assert [(metric, label, count, total) for _, metric, label, count, total in after
            if metric == "stored_bytes"] == [("stored_bytes", "webp", 3, 400)]
