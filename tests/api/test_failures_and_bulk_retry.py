"""Failed images grouped by error code, and the bulk retry of what a filter matches.

Images fail for real: a provider answers with refusals and invalid-request errors, the worker
records them, and the queries read what it wrote (SQLite and PostgreSQL).
"""

from __future__ import annotations

import asyncio
import time

import pytest
import pyvips
from sqlalchemy import func, select, update
from starlette.testclient import TestClient

from blogimg.api import app as api_app
from blogimg.api.routes import failures as failures_routes
from blogimg.config import Settings
from blogimg.db.database import Database
from blogimg.db.jobs import FailedToRetry
from blogimg.db.tables import GeneratedImage, ImageEvent
from blogimg.domain import ImageRequest, Outcome, ProviderImage, Status
from blogimg.errors import ProviderError
from blogimg.storage import MemoryStorage
from blogimg.testing import FakeProvider
from tests.support import AUTH, READ_AUTH, make_images, on_both_engines, registry_with

PROMPTS = [
    {"prompt": "a calm harbour", "kind": "cover"},
    {"prompt": "refuse: a cat with a sword", "kind": "inline"},
    {"prompt": "refuse: a dog with a sword", "kind": "inline"},
    {"prompt": "refuse: an owl with a sword", "kind": "section"},
    {"prompt": "invalid: a teapot", "kind": "inline"},
    {"prompt": "invalid: a kettle", "kind": "cover"},
]


def picture() -> bytes:
    return bytes(pyvips.Image.black(64, 48, bands=3).copy(interpretation="srgb").pngsave_buffer())


def answer(request: ImageRequest, number: int) -> ProviderImage:
    """Refuse ``refuse:`` prompts (one message for cats, another for the rest); reject ``invalid:`` ones."""
    if request.prompt.startswith("refuse:"):
        reason = "cats are not allowed" if "cat" in request.prompt else "blocked by the safety system"
        raise ProviderError(Outcome.REFUSED, reason, http_status=400)
    if request.prompt.startswith("invalid:"):
        raise ProviderError(Outcome.INVALID, "size is not supported", http_status=400)
    return ProviderImage(data=picture(), model="fake-1", cost_usd=0.01)


@pytest.fixture
def failing(client: TestClient, api_settings: Settings, storage: MemoryStorage) -> dict[str, int]:
    """Six images made: one succeeded, three refused, two invalid; prompt → image id."""
    batch = client.post("/api/images/generate", headers=AUTH, json={"prompts": PROMPTS})
    assert batch.status_code == 202, batch.text
    make_images(api_settings, storage, FakeProvider("fake", handler=answer))
    ids = dict(zip([p["prompt"] for p in PROMPTS], batch.json()["image_ids"], strict=True))
    statuses = {prompt: client.get(f"/api/images/{image_id}", headers=AUTH).json()["status"]
                for prompt, image_id in ids.items()}
    assert list(statuses.values()) == ["succeeded"] + ["failed"] * 5, statuses
    return ids


def status_of(client: TestClient, image_id: int) -> str:
    return str(client.get(f"/api/images/{image_id}", headers=AUTH).json()["status"])


@on_both_engines
def test_failures_are_grouped_by_error_code_with_providers_and_messages(
        client: TestClient, failing: dict[str, int]) -> None:
    report = client.get("/api/images/failures", headers=AUTH)
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["total"] == 5 and body["other_codes"] == 0
    assert [(group["error_code"], group["count"]) for group in body["groups"]] == [("refused", 3), ("invalid", 2)]
    refused, invalid = body["groups"]
    assert refused["providers"] == [{"value": "fake", "count": 3}]
    # The commonest message first, each with the images it stands for.
    assert [(m["value"], m["count"]) for m in refused["messages"]] == [
        ("fake: blocked by the safety system", 2), ("fake: cats are not allowed", 1)]
    assert [m["value"] for m in invalid["messages"]] == ["fake: size is not supported"]
    assert {example["id"] for example in refused["examples"]} == {
        failing[p["prompt"]] for p in PROMPTS if p["prompt"].startswith("refuse:")}
    assert refused["newest_at"] is not None and refused["newest_at"].endswith(("Z", "+00:00"))


@on_both_engines
def test_the_failures_filters_narrow_the_groups(client: TestClient, failing: dict[str, int]) -> None:
    def total(**query: str | int) -> int:
        answer = client.get("/api/images/failures", headers=AUTH, params=query)
        assert answer.status_code == 200, answer.text
        return int(answer.json()["total"])

    assert total(kind="cover") == 1
    assert total(kind="section") == 1
    assert total(q="sword") == 3
    assert total(q="kettle") == 1
    assert total(provider="fake") == 5  # the ledger says who was called: failed rows name no provider
    assert total(provider="another") == 0
    assert total(error_code="invalid") == 2
    post_id = client.get(f"/api/images/{failing['invalid: a kettle']}", headers=AUTH).json()["post_id"]
    assert total(post_id=post_id) == 5
    assert total(post_id=post_id + 1) == 0
    assert total(created_from="2000-01-01T00:00:00Z", created_to="2100-01-01T00:00:00Z") == 5
    assert total(created_from="2100-01-01T00:00:00Z") == 0


@on_both_engines
def test_bulk_retry_queues_exactly_what_the_filter_matches(client: TestClient, failing: dict[str, int]) -> None:
    retried = client.post("/api/images/retry", headers={**AUTH, "Idempotency-Key": "retry-swords"},
                          json={"q": "sword", "kind": "inline"})
    assert retried.status_code == 202, retried.text
    expected = sorted([failing["refuse: a cat with a sword"], failing["refuse: a dog with a sword"]])
    assert sorted(retried.json()["image_ids"]) == expected
    statuses = {prompt: status_of(client, image_id) for prompt, image_id in failing.items()}
    assert statuses == {
        "a calm harbour": "succeeded",  # never re-queued
        "refuse: a cat with a sword": "queued", "refuse: a dog with a sword": "queued",
        "refuse: an owl with a sword": "failed",  # a section, not inline
        "invalid: a teapot": "failed", "invalid: a kettle": "failed",
    }
    batch = client.get(f"/api/batches/{retried.json()['batch_id']}", headers=AUTH).json()
    assert batch["counts"]["queued"] == 2 and sorted(batch["image_ids"]) == expected

    # The same key and body: the same batch, nothing queued again.
    again = client.post("/api/images/retry", headers={**AUTH, "Idempotency-Key": "retry-swords"},
                        json={"q": "sword", "kind": "inline"})
    assert again.status_code == 202 and again.json() == retried.json()
    # The same key for another request is refused, and changes nothing.
    other = client.post("/api/images/retry", headers={**AUTH, "Idempotency-Key": "retry-swords"},
                        json={"error_code": "invalid"})
    assert other.status_code == 422 and other.json()["error"]["code"] == "conflict"  # as generate answers
    assert status_of(client, failing["invalid: a teapot"]) == "failed"


def test_bulk_retry_of_everything_failed_never_touches_a_succeeded_image(
        client: TestClient, failing: dict[str, int]) -> None:
    before = client.get(f"/api/images/{failing['a calm harbour']}", headers=AUTH).json()
    retried = client.post("/api/images/retry", headers=AUTH, json={})
    assert retried.status_code == 202, retried.text
    assert sorted(retried.json()["image_ids"]) == sorted(
        image_id for prompt, image_id in failing.items() if prompt != "a calm harbour")
    assert client.get(f"/api/images/{failing['a calm harbour']}", headers=AUTH).json() == before
    # Nothing failed is left, so a second bulk retry has nothing to do.
    nothing = client.post("/api/images/retry", headers=AUTH, json={})
    assert nothing.status_code == 409 and "no failed image" in nothing.json()["error"]["message"]


def test_bulk_retry_refuses_a_filter_over_the_limit(client: TestClient, failing: dict[str, int],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(failures_routes, "RETRY_LIMIT", 2)
    too_many = client.post("/api/images/retry", headers=AUTH, json={"error_code": "refused"})
    assert too_many.status_code == 422, too_many.text
    assert "more than 2 failed images" in too_many.json()["error"]["message"]
    assert status_of(client, failing["refuse: a cat with a sword"]) == "failed"  # nothing queued
    within = client.post("/api/images/retry", headers=AUTH, json={"error_code": "invalid"})
    assert within.status_code == 202 and len(within.json()["image_ids"]) == 2
    assert client.get("/api/images/failures", headers=AUTH).json()["retry_limit"] == 2


@pytest.mark.parametrize("body", [
    {"kind": "poster"}, {"post_id": 0}, {"post_id": 2**31}, {"created_from": "yesterday"},
    {"q": "a\u0000b"}, {"status": "succeeded"}, {"provider": ""}, {"error_code": "x" * 33}, [1, 2],
])
def test_bulk_retry_refuses_bad_filters_with_422(client: TestClient, body: object) -> None:
    answer = client.post("/api/images/retry", headers=AUTH, json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "validation"


@pytest.mark.parametrize("query", [{"kind": "poster"}, {"post_id": "x"}, {"created_to": "soon"}, {"q": "x" * 201}])
def test_failures_refuses_bad_filters_with_422(client: TestClient, query: dict[str, str]) -> None:
    answer = client.get("/api/images/failures", headers=AUTH, params=query)
    assert answer.status_code == 422, answer.text


def test_the_failures_route_is_not_taken_for_an_image_id(client: TestClient) -> None:
    answer = client.get("/api/images/failures", headers=AUTH)
    assert answer.status_code == 200 and answer.json() == {"total": 0, "groups": [], "other_codes": 0,
                                                           "retry_limit": failures_routes.RETRY_LIMIT}


def test_a_read_only_key_sees_failures_but_cannot_retry_them(
        client: TestClient, client_without_key: TestClient, api_settings: Settings, storage: MemoryStorage) -> None:
    batch = client.post("/api/images/generate", json={"prompts": PROMPTS[1:2]}).json()
    make_images(api_settings, storage, FakeProvider("fake", handler=answer))
    assert client.get("/api/images/failures", headers=READ_AUTH).json()["total"] == 1
    refused = client.post("/api/images/retry", headers=READ_AUTH, json={})
    assert refused.status_code == 403, refused.text
    assert client_without_key.post("/api/images/retry", json={}).status_code == 401
    assert status_of(client, batch["image_ids"][0]) == "failed"


def test_the_embedded_worker_makes_what_a_bulk_retry_queued(api_settings: Settings) -> None:
    refusing = True

    def sometimes(request: ImageRequest, number: int) -> ProviderImage:
        if refusing:
            raise ProviderError(Outcome.REFUSED, "not today", http_status=400)
        return ProviderImage(data=picture(), model="fake-1", cost_usd=0.01)

    app = api_app.create_app(api_settings.model_copy(update={"providers": ["fake"]}), storage=MemoryStorage(),
                             run_worker=True, registry=registry_with(FakeProvider("fake", handler=sometimes)))
    with TestClient(app) as client:
        ids = client.post("/api/images/generate", headers=AUTH, json={"prompts": PROMPTS[:2]}).json()["image_ids"]
        wait_for(client, ids, "failed")
        refusing = False
        retried = client.post("/api/images/retry", headers=AUTH, json={"error_code": "refused"})
        assert retried.status_code == 202 and sorted(retried.json()["image_ids"]) == sorted(ids)
        wait_for(client, ids, "succeeded")


def wait_for(client: TestClient, ids: list[int], status: str) -> None:
    deadline = time.monotonic() + 20
    while {status_of(client, image_id) for image_id in ids} != {status}:
        assert time.monotonic() < deadline, [status_of(client, image_id) for image_id in ids]
        time.sleep(0.05)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_retries_at_once_queue_each_failed_image_once(api_settings: Settings, failing: dict[str, int]) -> None:
    """Bulk retries and single ones racing over the same failed images: each image is reset, and
    its QUEUED event written, once per failure — never once per retry that saw it failed."""
    failed_ids = sorted(image_id for prompt, image_id in failing.items() if prompt != "a calm harbour")

    async def race() -> list[dict[int, int]]:
        database = await Database.open(api_settings.database_url)
        rounds: list[dict[int, int]] = []
        try:
            for _ in range(5):
                async with database.engine.begin() as connection:  # the same images fail again
                    await connection.execute(update(GeneratedImage).where(GeneratedImage.id.in_(failed_ids))
                                             .values(status=Status.FAILED))
                    before = (await connection.execute(select(func.coalesce(func.max(ImageEvent.id), 0)))).scalar_one()
                await asyncio.gather(*[database.queue.enqueue(FailedToRetry()) for _ in range(3)],
                                     *[database.queue.enqueue(FailedToRetry(image_ids=failed_ids)) for _ in range(2)],
                                     *[database.queue.requeue(image_id) for image_id in failed_ids])
                async with database.engine.connect() as connection:
                    rows = await connection.execute(
                        select(ImageEvent.image_id, func.count()).where(ImageEvent.id > before,
                                                                        ImageEvent.status == Status.QUEUED)
                        .group_by(ImageEvent.image_id))
                    rounds.append({image_id: count for image_id, count in rows})
        finally:
            await database.close()
        return rounds

    for queued in asyncio.run(race()):
        assert queued == dict.fromkeys(failed_ids, 1)
