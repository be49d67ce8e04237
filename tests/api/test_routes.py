"""The REST API's contracts: shapes, errors, auth, idempotency, and the queue behind it."""

from __future__ import annotations

import asyncio
import threading

import pytest
from starlette.testclient import TestClient

from blogimg.api.app import create_app
from blogimg.config import Settings
from blogimg.storage import MemoryStorage
from blogimg.testing import FakeProvider
from tests.support import AUTH, make_images, on_both_engines

POST = "---\ntitle: Night trains\nsummary: Sleeping across Europe\n---\n<!-- image: a sleeper cabin | alt: Cabin -->\n"


def test_a_post_from_markdown_then_its_images(client: TestClient, api_settings: Settings, storage: MemoryStorage) -> None:
    created = client.post("/api/posts", json={"markdown": POST, "enqueue": True}, headers=AUTH)
    assert created.status_code == 201, created.text
    post = created.json()
    assert post["slug"] == "night-trains" and len(post["prompts"]) == 2 and post["batch_id"]
    make_images(api_settings, storage)
    batch = client.get(f"/api/batches/{post['batch_id']}").json()
    assert batch["done"] and batch["counts"]["succeeded"] == 2
    images = client.get(f"/api/images/blog/{post['id']}").json()["items"]
    assert {image["status"] for image in images} == {"succeeded"}
    assert sorted(batch["image_ids"]) == sorted(image["id"] for image in images)  # a batch lists its images
    assert all(image["variants"] and image["url"] for image in images)
    inline = next(image for image in images if image["alt_text"] == "Cabin")
    assert client.get(f"/api/images/prompt/{inline['prompt_id']}").json()["items"][0]["id"] == inline["id"]


def test_a_batch_of_images_made_already_counts_exactly_what_it_lists(
        client: TestClient, api_settings: Settings, storage: MemoryStorage) -> None:
    post = client.post("/api/posts", json={"markdown": POST, "enqueue": True}, headers=AUTH).json()
    make_images(api_settings, storage)
    again = client.post("/api/images/generate", json={"blog_post_id": post["id"]}, headers=AUTH).json()
    batch = client.get(f"/api/batches/{again['batch_id']}").json()
    assert len(batch["image_ids"]) == 2 and batch["image_ids"] == again["image_ids"]
    assert batch["done"] and batch["counts"] == {"queued": 0, "running": 0, "succeeded": 2, "failed": 0}
    assert batch["cost_usd"] == 0  # nothing was called for it


def test_edit_delete_and_retry(client: TestClient, api_settings: Settings, storage: MemoryStorage) -> None:
    batch = client.post("/api/images/generate", json={"prompts": [{"prompt": "a red kite"}]}, headers=AUTH).json()
    make_images(api_settings, storage)
    image_id = batch["image_ids"][0]
    edited = client.put(f"/api/images/{image_id}", headers=AUTH, json={
        "alt_text": "A red kite over hills", "rating": 5, "focal_point": {"x": 0.25, "y": 0.5}, "tags": ["kite"]})
    assert edited.status_code == 200, edited.text
    body = edited.json()
    assert (body["alt_text"], body["rating"], body["focal_point"], body["tags"]) == (
        "A red kite over hills", 5, {"x": 0.25, "y": 0.5}, ["kite"])
    assert client.put(f"/api/images/{image_id}", headers=AUTH, json={"rating": 6}).status_code == 422
    assert client.post(f"/api/images/{image_id}/retry", headers=AUTH).status_code == 409
    keys = [v["url"].removeprefix("memory://") for v in body["variants"]]
    assert all(key in storage.files for key in keys)
    assert client.delete(f"/api/images/{image_id}", headers=AUTH).status_code == 204
    assert not any(key in storage.files for key in keys)  # the files of every variant went too
    assert client.get(f"/api/images/{image_id}").status_code == 404


def test_errors_have_one_shape(client: TestClient) -> None:
    for response, status in [
        (client.get("/api/images/999999"), 404),
        (client.get("/api/images/not-a-number"), 422),
        (client.post("/api/images/generate", json={}, headers=AUTH), 422),
        (client.post("/api/images/generate", json={"blog_post_id": 424242}, headers=AUTH), 404),
        (client.post("/api/images/generate", json={"prompts": [{"prompt": "x"}], "options": {"providers": ["nope"]}},
                     headers=AUTH), 422),
        (client.get("/api/images/search", params={"cursor": "garbage!"}), 422),
        (client.get("/api/images/search", params={"limit": 101}), 422),
        (client.post("/api/posts", content=b"x" * 2_000_000, headers=AUTH | {"Content-Type": "application/json"}), 413),
    ]:
        assert response.status_code == status, (response.request.url, response.text)
        error = response.json()["error"]
        assert set(error) == {"code", "message"} and error["message"]


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/api/images/generate"), ("PUT", "/api/images/1"), ("DELETE", "/api/images/1"),
    ("POST", "/api/images/1/retry"), ("POST", "/api/images/1/repair"), ("POST", "/api/images/cleanup"),
    ("POST", "/api/images/retry"), ("POST", "/api/posts"),
    ("POST", "/api/bulk/retry"), ("DELETE", "/api/posts/1/images"), ("POST", "/api/bulk/remake-variants"),
    ("POST", "/api/bulk/prune-events"),
    ("POST", "/api/webhooks"), ("PATCH", "/api/webhooks/1"), ("DELETE", "/api/webhooks/1"),
])
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-key", "Basic dGVzdA==", "Bearer "])
def test_every_mutating_route_needs_a_key(client_without_key: TestClient, method: str, path: str,
                                         authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = client_without_key.request(method, path, json={"prompts": [{"prompt": "x"}]}, headers=headers)
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


def test_every_mutating_route_in_the_schema_is_covered(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    mutating = {(method.upper(), path) for path, item in spec["paths"].items()
                for method in item if method in {"post", "put", "delete", "patch"}}
    covered = {("POST", "/api/images/generate"), ("PUT", "/api/images/{image_id}"),
               ("DELETE", "/api/images/{image_id}"), ("POST", "/api/images/{image_id}/retry"),
               ("POST", "/api/images/{image_id}/repair"),
               ("POST", "/api/images/cleanup"), ("POST", "/api/images/retry"), ("POST", "/api/posts")}
    covered |= {("POST", "/api/bulk/retry"), ("DELETE", "/api/posts/{post_id}/images"),
                ("POST", "/api/bulk/remake-variants"), ("POST", "/api/bulk/prune-events")}  # bulk actions
    covered |= {("POST", "/api/webhooks"), ("PATCH", "/api/webhooks/{endpoint_id}"),
                ("DELETE", "/api/webhooks/{endpoint_id}")}  # webhook endpoints
    assert mutating == covered


@on_both_engines
def test_idempotency_same_body_same_batch_other_body_422(client: TestClient) -> None:
    body = {"prompts": [{"prompt": "a lighthouse"}], "options": {"variations": 2}}
    first = client.post("/api/images/generate", json=body, headers=AUTH | {"Idempotency-Key": "k-1"})
    again = client.post("/api/images/generate", json=body, headers=AUTH | {"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json() and len(first.json()["image_ids"]) == 2
    other = client.post("/api/images/generate", json={"prompts": [{"prompt": "a harbour"}]},
                        headers=AUTH | {"Idempotency-Key": "k-1"})
    assert other.status_code == 422 and other.json()["error"]["code"] == "conflict"


@on_both_engines
def test_idempotency_two_concurrent_requests_make_one_batch(api_settings: Settings) -> None:
    app = create_app(api_settings, storage=MemoryStorage())
    body = {"prompts": [{"prompt": f"scene {n}"} for n in range(5)]}
    answers: list = []
    with TestClient(app, headers=AUTH) as client:
        barrier = threading.Barrier(8)

        def send() -> None:
            barrier.wait()
            answers.append(client.post("/api/images/generate", json=body, headers=AUTH | {"Idempotency-Key": "same"}))

        threads = [threading.Thread(target=send) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert {answer.status_code for answer in answers} == {202}
        assert len({answer.json()["batch_id"] for answer in answers}) == 1
        assert len({tuple(answer.json()["image_ids"]) for answer in answers}) == 1
        batch_id = answers[0].json()["batch_id"]
        assert client.get(f"/api/batches/{batch_id}").json()["counts"]["queued"] == 5
        assert client.get(f"/api/batches/{batch_id + 1}").status_code == 404


def test_search_pages_by_cursor_and_filters(client: TestClient, api_settings: Settings, storage: MemoryStorage) -> None:
    client.post("/api/images/generate", json={"prompts": [{"prompt": f"harbour {n}"} for n in range(7)]}, headers=AUTH)
    client.post("/api/images/generate", json={"prompts": [{"prompt": "100% cotton_shirt"}]}, headers=AUTH)
    seen, cursor = [], None
    while True:
        page = client.get("/api/images/search", params={"q": "harbour", "limit": 3} | ({"cursor": cursor} if cursor else {})).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 7 and seen == sorted(seen, reverse=True)
    literal = client.get("/api/images/search", params={"q": "0% cotton_"}).json()["items"]
    assert [item["prompt"] for item in literal] == ["100% cotton_shirt"]
    assert client.get("/api/images/search", params={"q": "_"}).json()["items"] == literal  # _ is no wildcard
    assert client.get("/api/images/search", params={"status": "succeeded"}).json()["items"] == []


def test_stats_health_metrics_and_events(client: TestClient, api_settings: Settings, storage: MemoryStorage) -> None:
    client.post("/api/images/generate", json={"prompts": [{"prompt": "a fern"}]}, headers=AUTH)
    make_images(api_settings, storage, FakeProvider("fake", latency=0.01, cost_usd=0.02))
    rows = client.get("/api/images/stats").json()["items"]
    assert [(r["provider"], r["status"], r["count"], r["cost_usd"], r["success_rate"]) for r in rows] == [
        ("fake", "succeeded", 1, 0.02, 1.0)]
    assert rows[0]["latency_p50_ms"] is not None
    assert client.get("/healthz").json() == {"status": "ok", "database": "ok"}
    metrics = client.get("/metrics").text
    assert 'blogimg_images{status="succeeded"} 1.0' in metrics
    assert 'blogimg_provider_calls_total{model="fake-1",outcome="ok",provider="fake"} 1.0' in metrics
    with client.stream("GET", "/api/events", params={"after": 0, "limit": 3}) as stream:
        text = "".join(stream.iter_text())
    assert [line for line in text.splitlines() if line.startswith("data:")][:3] == [
        line for line in text.splitlines() if line.startswith("data:")]
    assert '"status": "queued"' in text and '"status": "running"' in text and '"status": "succeeded"' in text
    ids = [int(line.split()[1]) for line in text.splitlines() if line.startswith("id:")]
    with client.stream("GET", "/api/events", params={"limit": 1}, headers={"Last-Event-ID": str(ids[1])}) as stream:
        resumed = "".join(stream.iter_text())
    assert f"id: {ids[2]}" in resumed and '"status": "succeeded"' in resumed


def test_cleanup_reports_both_ways_and_deletes_only_old_orphans(client: TestClient, api_settings: Settings,
                                                                storage: MemoryStorage) -> None:
    batch = client.post("/api/images/generate", json={"prompts": [{"prompt": "a gate"}]}, headers=AUTH).json()
    make_images(api_settings, storage)
    image = client.get(f"/api/images/{batch['image_ids'][0]}").json()
    lost = image["variants"][0]["url"].removeprefix("memory://")
    del storage.files[lost]
    asyncio.run(storage.put("ab/cd/orphan.webp", b"x", "image/webp"))
    report = client.post("/api/images/cleanup", headers=AUTH).json()
    assert report["files_without_rows"] == ["ab/cd/orphan.webp"] and report["rows_missing_files"] == [image["id"]]
    assert report["deleted"] == [] and "ab/cd/orphan.webp" in storage.files  # a dry run by default
    young = client.post("/api/images/cleanup", params={"apply": "true"}, headers=AUTH).json()
    assert young["deleted"] == []  # younger than the grace period: maybe a job about to commit
    storage.modified["ab/cd/orphan.webp"] -= 7200
    old = client.post("/api/images/cleanup", params={"apply": "true"}, headers=AUTH).json()
    assert old["deleted"] == ["ab/cd/orphan.webp"] and "ab/cd/orphan.webp" not in storage.files


def test_cleanup_says_which_orphans_it_kept_for_want_of_an_age(client: TestClient, storage: MemoryStorage) -> None:
    asyncio.run(storage.put("ab/cd/undated.webp", b"x", "image/webp"))
    del storage.modified["ab/cd/undated.webp"]  # as a backend that gives no modification time
    report = client.post("/api/images/cleanup", params={"apply": "true"}, headers=AUTH).json()
    assert (report["deleted"], report["kept_undated"]) == ([], ["ab/cd/undated.webp"])
    dry = client.post("/api/images/cleanup", headers=AUTH).json()
    assert (dry["files_without_rows"], dry["kept_undated"]) == (["ab/cd/undated.webp"], [])


def test_the_same_prompt_twice_in_one_request_is_one_image(client: TestClient) -> None:
    # Found by schemathesis: this used to break the (prompt, variation) unique key with a 500.
    body = {"prompts": [{"prompt": "00"}, {"prompt": "00"}]}
    answer = client.post("/api/images/generate", json=body, headers=AUTH)
    assert answer.status_code == 202 and len(answer.json()["image_ids"]) == 1
    empty_key = client.post("/api/images/generate", json=body, headers=AUTH | {"Idempotency-Key": ""})
    assert empty_key.status_code == 422  # an empty key is refused, never stored as a key


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+00:01", "9999-12-31T23:59:59-00:01"])
def test_dates_at_the_ends_of_time_do_not_overflow(client: TestClient, moment: str) -> None:
    # Found by schemathesis: converting these to UTC overflowed into a 500.
    for name in ("created_from", "created_to"):
        assert client.get("/api/images/search", params={name: moment}).status_code == 200


def test_null_is_the_same_as_leaving_a_field_out(client: TestClient) -> None:
    assert client.post("/api/images/generate", json={"blog_post_id": None, "prompts": [{"prompt": "a fox"}]},
                       headers=AUTH).status_code == 202
    for body in ({"prompts": None}, {"blog_post_id": None, "prompts": None}):
        answer = client.post("/api/images/generate", json=body, headers=AUTH)
        assert (answer.status_code, answer.json()["error"]["code"]) == (422, "validation")
    too_big = client.post("/api/images/generate", json={"prompts": [{"prompt": "a fox", "size": "9999x9999"}]},
                          headers=AUTH)
    assert too_big.status_code == 422 and "between 64 and 8192" in too_big.json()["error"]["message"]


def test_posts_without_a_title_or_slug_never_replace_each_other(client: TestClient) -> None:
    first = client.post("/api/posts", json={"markdown": "Just a note about tides.\n"}, headers=AUTH).json()
    second = client.post("/api/posts", json={"markdown": "Another note, about wind.\n"}, headers=AUTH).json()
    assert first["id"] != second["id"] and first["slug"] != second["slug"]
    again = client.post("/api/posts", json={"markdown": "Just a note about tides.\n"}, headers=AUTH).json()
    assert again["id"] == first["id"]  # the same text is the same post
