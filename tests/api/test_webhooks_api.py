"""/api/webhooks and the /webhooks view: endpoints under the public-address policy, secrets shown once, the delivery log."""

from __future__ import annotations

import asyncio

import pytest
from starlette.testclient import TestClient

from blogimg.api.app import create_app
from blogimg.config import Settings
from blogimg.db.database import Database
from blogimg.db.webhooks import record_event
from blogimg.pipeline.webhook_signing import new_secret
from blogimg.storage import MemoryStorage
from tests.support import AUTH, READ_AUTH

PRIVATE_URLS = ["http://10.1.2.3/hooks", "http://192.168.0.10/hooks", "http://169.254.169.254/latest/meta-data",
                "http://[::1]:8080/hooks", "http://localhost/hooks", "http://127.0.0.1:9/hooks"]


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_a_private_address_is_refused(client: TestClient, url: str) -> None:
    response = client.post("/api/webhooks", json={"url": url})
    assert response.status_code == 422, response.text
    assert "not a public address" in response.json()["error"]["message"]
    assert client.get("/api/webhooks").json()["items"] == []


def test_endpoints_are_added_listed_disabled_and_deleted(api_settings: Settings, storage: MemoryStorage) -> None:
    settings = api_settings.model_copy(update={"webhook_allow_loopback": True})
    with TestClient(create_app(settings, storage=storage), headers=AUTH) as client:
        created = client.post("/api/webhooks", json={"url": "http://127.0.0.1:9/a"})
        assert created.status_code == 201, created.text
        secret = created.json()["secret"]
        assert secret.startswith("whsec_")  # generated: shown this once
        own = client.post("/api/webhooks", json={"url": "http://127.0.0.1:9/b", "secret": new_secret()})
        assert own.status_code == 201 and own.json()["secret"] is None  # the client's own: never echoed
        assert client.post("/api/webhooks", json={"url": "http://127.0.0.1:9/a"}).status_code == 409
        assert client.post("/api/webhooks", json={"url": "http://127.0.0.1:9/c", "secret": "nope"}).status_code == 422
        assert client.post("/api/webhooks", json={"url": "ftp://127.0.0.1/c"}).status_code == 422
        listed = client.get("/api/webhooks", headers=READ_AUTH).json()["items"]
        # A read-only key sees where events go, not the path (receivers put tokens there).
        assert [item["url"] for item in listed] == ["http://127.0.0.1:9/…", "http://127.0.0.1:9/…"]
        assert [item["url"] for item in client.get("/api/webhooks").json()["items"]] \
            == ["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"]
        assert secret not in str(listed) and all("secret" not in item for item in listed)
        endpoint_id = created.json()["id"]
        assert client.post("/api/webhooks", json={"url": "http://127.0.0.1:9/d"}, headers=READ_AUTH).status_code == 403
        assert client.delete(f"/api/webhooks/{endpoint_id}", headers=READ_AUTH).status_code == 403
        disabled = client.patch(f"/api/webhooks/{endpoint_id}", json={"enabled": False})
        assert disabled.status_code == 200 and disabled.json()["enabled"] is False
        assert client.delete(f"/api/webhooks/{endpoint_id}").status_code == 204
        assert client.delete(f"/api/webhooks/{endpoint_id}").status_code == 404
        assert [item["url"] for item in client.get("/api/webhooks").json()["items"]] == ["http://127.0.0.1:9/b"]


def test_settings_endpoints_are_disabled_not_deleted(api_settings: Settings, storage: MemoryStorage) -> None:
    settings = api_settings.model_copy(update={"webhook_allow_loopback": True, "webhook_urls": ["http://127.0.0.1:9/s"],
                                               "webhook_secret": new_secret()})
    with TestClient(create_app(settings, storage=storage), headers=AUTH) as client:
        [endpoint] = client.get("/api/webhooks").json()["items"]
        assert endpoint["source"] == "settings" and endpoint["enabled"]
        assert client.delete(f"/api/webhooks/{endpoint['id']}").status_code == 409


def test_the_delivery_log_pages_and_filters(api_settings: Settings, storage: MemoryStorage) -> None:
    settings = api_settings.model_copy(update={"webhook_allow_loopback": True})
    with TestClient(create_app(settings, storage=storage), headers=AUTH) as client:
        endpoint_id = client.post("/api/webhooks", json={"url": "http://127.0.0.1:9/a"}).json()["id"]

        async def write_events() -> None:
            database = await Database.open(settings.database_url)
            try:
                async with database.sessions.begin() as session:
                    for number in range(5):
                        await record_event(session, "image.failed", {"image_id": number})
            finally:
                await database.close()

        asyncio.run(write_events())
        first = client.get("/api/webhooks/deliveries", params={"limit": 3, "endpoint_id": endpoint_id}).json()
        assert len(first["items"]) == 3 and first["next_cursor"]
        second = client.get("/api/webhooks/deliveries", params={"limit": 3, "cursor": first["next_cursor"]}).json()
        assert len(second["items"]) == 2 and second["next_cursor"] is None
        items = first["items"] + second["items"]
        assert [item["id"] for item in items] == sorted((item["id"] for item in items), reverse=True)
        assert {(item["status"], item["attempts"], item["event_type"]) for item in items} == {("pending", 0, "image.failed")}
        assert "payload" not in items[0]
        assert client.get("/api/webhooks/deliveries", params={"status": "delivered"}).json()["items"] == []
        assert client.get("/api/webhooks/deliveries", params={"cursor": "x"}).status_code == 422
        page = client.get("/webhooks")
        assert page.status_code == 200 and "image.failed" in page.text and 'href="/webhooks"' in page.text
        assert client.get("/webhooks", params={"status": "nope"}).status_code == 422


def test_urls_are_shown_whole_to_full_keys_only(api_settings: Settings, storage: MemoryStorage) -> None:
    settings = api_settings.model_copy(update={"webhook_allow_loopback": True})
    url = "http://127.0.0.1:9/hooks/token-123?key=abc"
    with TestClient(create_app(settings, storage=storage), headers=AUTH) as client:
        assert client.post("/api/webhooks", json={"url": url}).status_code == 201

        async def write_event() -> None:
            database = await Database.open(settings.database_url)
            try:
                async with database.sessions.begin() as session:
                    await record_event(session, "image.failed", {"image_id": 1})
            finally:
                await database.close()

        asyncio.run(write_event())
        for path in ("/api/webhooks", "/api/webhooks/deliveries"):
            assert client.get(path).json()["items"][0]["url"] == url
            read = client.get(path, headers=READ_AUTH)
            assert read.status_code == 200 and read.json()["items"][0]["url"] == "http://127.0.0.1:9/…"
            assert "token-123" not in read.text and "key=abc" not in read.text
        assert "token-123" in client.get("/webhooks").text
        page = client.get("/webhooks", headers=READ_AUTH)
        assert page.status_code == 200 and "http://127.0.0.1:9/…" in page.text
        assert "token-123" not in page.text and "key=abc" not in page.text
