"""A stored file deleted behind blogimg's back: the image JSON says so, and the API makes it again."""

from __future__ import annotations

from starlette.testclient import TestClient

from blogimg.config import Settings
from blogimg.storage import MemoryStorage
from blogimg.testing import FakeProvider
from tests.support import AUTH, make_images


def _made_image(client: TestClient, api_settings: Settings, storage: MemoryStorage, prompt: str) -> dict:
    batch = client.post("/api/images/generate", json={"prompts": [{"prompt": prompt}]}, headers=AUTH).json()
    make_images(api_settings, storage)
    image = client.get(f"/api/images/{batch['image_ids'][0]}").json()
    assert image["status"] == "succeeded" and image["missing_files"] == []
    return image


def _key(url: str) -> str:
    return url.removeprefix("memory://")


def test_a_lost_variant_is_reported_and_made_again_from_the_master(
        client: TestClient, client_without_key: TestClient, api_settings: Settings, storage: MemoryStorage) -> None:
    image = _made_image(client, api_settings, storage, "a lighthouse")
    lost = [_key(image["variants"][0]["url"]), _key(image["thumbnail_url"])]
    kept = {key: storage.files[key] for key in lost}
    for key in lost:
        del storage.files[key]

    seen = client.get(f"/api/images/{image['id']}").json()
    assert seen["status"] == "succeeded" and sorted(seen["missing_files"]) == sorted(lost)
    assert client.get("/api/images/search").json()["items"][0]["missing_files"] is None  # lists do not look

    assert client_without_key.post(f"/api/images/{image['id']}/repair").status_code == 401
    answer = client.post(f"/api/images/{image['id']}/repair", headers=AUTH)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert sorted(body["missing_files"]) == sorted(lost) and len(body["repaired_files"]) == len(lost)
    assert body["remade_batch_id"] is None and all(key in storage.files for key in body["repaired_files"])
    after = client.get(f"/api/images/{image['id']}").json()
    assert after["missing_files"] == [] and sorted(body["repaired_files"]) == sorted(
        [_key(after["variants"][0]["url"]), _key(after["thumbnail_url"])])
    assert all(len(storage.files[new]) > 0 for new in body["repaired_files"])
    if after["format"] == "jpeg":  # files made again from a JPEG master differ a little: new keys
        assert all(new not in kept for new in body["repaired_files"])
    else:  # a lossless master (flat art as PNG) gives a lossless variant the very same bytes
        assert after["format"] == "png" and lost[0] in body["repaired_files"]
        assert storage.files[lost[0]] == kept[lost[0]]


def test_a_lost_master_needs_consent_to_call_a_provider_again(
        client: TestClient, api_settings: Settings, storage: MemoryStorage) -> None:
    image = _made_image(client, api_settings, storage, "a harbour")
    del storage.files[_key(image["url"])]

    refused = client.post(f"/api/images/{image['id']}/repair", headers=AUTH)
    assert refused.status_code == 409 and "remake=true" in refused.json()["error"]["message"]
    assert client.get(f"/api/images/{image['id']}").json()["status"] == "succeeded"  # nothing queued

    queued = client.post(f"/api/images/{image['id']}/repair", params={"remake": "true"}, headers=AUTH)
    assert queued.status_code == 200, queued.text
    assert queued.json()["remade_batch_id"] is not None and queued.json()["image"]["status"] == "queued"
    provider = FakeProvider("fake")
    make_images(api_settings, storage, provider)
    again = client.get(f"/api/images/{image['id']}").json()
    assert again["status"] == "succeeded" and again["missing_files"] == [] and _key(again["url"]) in storage.files
    assert len(provider.calls) == 1


def test_cleanup_through_the_api_repairs_and_remakes(
        client: TestClient, api_settings: Settings, storage: MemoryStorage) -> None:
    first = _made_image(client, api_settings, storage, "a meadow")
    second = _made_image(client, api_settings, storage, "a glacier")
    del storage.files[_key(first["variants"][-1]["url"])]
    del storage.files[_key(second["url"])]

    dry = client.post("/api/images/cleanup", headers=AUTH).json()
    assert dry["repairable"] == [first["id"]] and dry["masters_missing"] == [second["id"]] and dry["repaired"] == []
    fixed = client.post("/api/images/cleanup", params={"repair": "true"}, headers=AUTH).json()
    assert fixed["repaired"] == [first["id"]] and fixed["remade_batch_id"] is None
    remade = client.post("/api/images/cleanup", params={"remake": "true"}, headers=AUTH).json()
    assert remade["remade_batch_id"] is not None
    make_images(api_settings, storage)
    assert [client.get(f"/api/images/{i}").json()["missing_files"] for i in (first["id"], second["id"])] == [[], []]


def test_repair_answers_404_and_409_for_what_it_cannot_repair(client: TestClient) -> None:
    assert client.post("/api/images/12345/repair", headers=AUTH).status_code == 404
    batch = client.post("/api/images/generate", json={"prompts": [{"prompt": "a kite"}]}, headers=AUTH).json()
    queued = client.post(f"/api/images/{batch['image_ids'][0]}/repair", headers=AUTH)
    assert queued.status_code == 409 and "queued" in queued.json()["error"]["message"]
