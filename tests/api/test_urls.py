"""URLs follow the storage key and today's base URL when read, never the base of the day they were made."""

from __future__ import annotations

from starlette.testclient import TestClient

from blogimg.api.app import create_app
from blogimg.config import Settings
from blogimg.storage import MemoryStorage
from tests.support import AUTH, make_images


def test_a_new_base_url_moves_every_stored_url(api_settings: Settings) -> None:
    made_under = MemoryStorage(public_base_url="https://old.example.test/img/")
    with TestClient(create_app(api_settings, storage=made_under), headers=AUTH) as client:
        image_id = client.post("/api/images/generate", json={"prompts": [{"prompt": "a lighthouse"}]},
                               headers=AUTH).json()["image_ids"][0]
        make_images(api_settings, made_under)
        before = client.get(f"/api/images/{image_id}").json()
    assert before["url"].startswith("https://old.example.test/img/")

    moved = MemoryStorage(public_base_url="https://cdn.example.test/")
    moved.files.update(made_under.files)
    with TestClient(create_app(api_settings, storage=moved), headers=AUTH) as client:
        after = client.get(f"/api/images/{image_id}").json()
    urls = [after["url"], after["thumbnail_url"], *(variant["url"] for variant in after["variants"])]
    assert after["variants"] and all(url.startswith("https://cdn.example.test/") for url in urls)
    assert after["url"].removeprefix("https://cdn.example.test/") == before["url"].removeprefix(
        "https://old.example.test/img/")
