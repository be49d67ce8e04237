"""GET /api/images/{id}/attempts: the image's provider calls from the ledger, oldest first."""

from __future__ import annotations

from datetime import datetime

from starlette.testclient import TestClient

from blogimg.config import Settings
from blogimg.domain import Outcome
from blogimg.storage import MemoryStorage
from blogimg.testing import FakeProvider
from tests.support import AUTH, make_images, on_both_engines


@on_both_engines
def test_the_timeline_lists_every_call_oldest_first(client: TestClient, api_settings: Settings,
                                                    storage: MemoryStorage) -> None:
    batch = client.post("/api/images/generate", headers=AUTH, json={"prompts": [{"prompt": "a lighthouse"}]}).json()
    image_id = batch["image_ids"][0]
    assert client.get(f"/api/images/{image_id}/attempts", headers=AUTH).json() == {"items": []}  # queued: no call yet

    # Busy twice (retried), then an image: three calls, in the order they were made.
    make_images(api_settings, storage, FakeProvider("fake", script=[Outcome.TRANSIENT, Outcome.TRANSIENT],
                                                    cost_usd=0.04, model="fake-2"))
    answer = client.get(f"/api/images/{image_id}/attempts", headers=AUTH)
    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    assert [(item["outcome"], item["http_status"]) for item in items] == [
        ("transient", 503), ("transient", 503), ("ok", None)]
    assert {item["provider"] for item in items} == {"fake"} and {item["model"] for item in items} == {"fake-2"}
    assert items[-1]["cost_usd"] == 0.04 and items[-1]["estimated_cost_usd"] == 0.04 and items[-1]["error"] is None
    assert items[0]["error"] and "transient" in items[0]["error"]
    started = [datetime.fromisoformat(item["started_at"]) for item in items]
    assert started == sorted(started) and all(moment.utcoffset() is not None for moment in started)
    assert all(item["latency_ms"] >= 0 and item["attempt"] >= 1 for item in items)


def test_an_unknown_image_is_404_and_a_bad_id_422(client: TestClient) -> None:
    for image_id in (1, 2**31, 2**63):
        answer = client.get(f"/api/images/{image_id}/attempts", headers=AUTH)
        assert answer.status_code in (404, 422), answer.text
        assert answer.json()["error"]["code"] in ("not_found", "validation")
    assert client.get("/api/images/1/attempts", headers=AUTH).status_code == 404
    assert client.get("/api/images/x/attempts", headers=AUTH).status_code == 422


def test_the_timeline_needs_a_key_when_keys_are_set(client_without_key: TestClient) -> None:
    assert client_without_key.get("/api/images/1/attempts").status_code == 401
