"""Bulk actions and analytics through the API: retry a batch's or a post's failed images (the
queue's retry path), delete a post's images (rows, then files), re-make variants, prune events;
spend, storage by format and ratings (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
import pyvips
from starlette.testclient import TestClient

from blogimg.config import Settings
from blogimg.domain import ImageRequest, Outcome, ProviderImage
from blogimg.errors import ProviderError
from blogimg.storage import MemoryStorage
from blogimg.testing import FakeProvider
from tests.support import READ_AUTH, make_images, on_both_engines

pytestmark = on_both_engines
PROMPTS = [{"prompt": "a calm harbour"}, {"prompt": "refuse: a sword"}, {"prompt": "refuse: an axe"},
           {"prompt": "a quiet lake"}]


def picture() -> bytes:
    return bytes(pyvips.Image.black(64, 48, bands=3).copy(interpretation="srgb").pngsave_buffer())


def refusing(request: ImageRequest, number: int) -> ProviderImage:
    if request.prompt.startswith("refuse:"):
        raise ProviderError(Outcome.REFUSED, "blocked by the safety system", http_status=400)
    return ProviderImage(data=picture(), model="fake-1", cost_usd=0.01)


def willing(request: ImageRequest, number: int) -> ProviderImage:
    return ProviderImage(data=picture(), model="fake-1", cost_usd=0.01)


@pytest.fixture
def made(client: TestClient, api_settings: Settings, storage: MemoryStorage) -> dict[str, int]:
    """Four images of one batch: two succeeded, two refused. Prompt → id, plus "batch" and "post"."""
    batch = client.post("/api/images/generate", json={"prompts": PROMPTS})
    assert batch.status_code == 202, batch.text
    make_images(api_settings, storage, FakeProvider("fake", handler=refusing))
    ids = dict(zip([p["prompt"] for p in PROMPTS], batch.json()["image_ids"], strict=True))
    post = client.get(f"/api/images/{ids['a calm harbour']}").json()["post_id"]
    return {**ids, "batch": batch.json()["batch_id"], "post": post}


def test_retry_a_batch_or_a_post(client: TestClient, made: dict[str, int], api_settings: Settings,
                                 storage: MemoryStorage) -> None:
    failed = sorted([made["refuse: a sword"], made["refuse: an axe"]])
    assert client.post("/api/bulk/retry", json={"batch_id": made["batch"]}, headers=READ_AUTH).status_code == 403
    both = client.post("/api/bulk/retry", json={"batch_id": made["batch"], "post_id": made["post"]})
    assert both.status_code == 422 and "one of them" in both.json()["error"]["message"]
    assert client.post("/api/bulk/retry", json={"batch_id": 999_999}).status_code == 404
    assert client.post("/api/bulk/retry", json={"post_id": 999_999}).status_code == 404

    retried = client.post("/api/bulk/retry", json={"batch_id": made["batch"]})
    assert retried.status_code == 202, retried.text
    assert retried.json()["image_ids"] == failed and retried.json()["batch_id"] != made["batch"]
    assert [client.get(f"/api/images/{i}").json()["status"] for i in failed] == ["queued", "queued"]
    make_images(api_settings, storage, FakeProvider("fake", handler=refusing))  # refused again

    by_post = client.post("/api/bulk/retry", json={"post_id": made["post"]})
    assert by_post.status_code == 202 and by_post.json()["image_ids"] == failed
    make_images(api_settings, storage, FakeProvider("fake", handler=willing))
    assert [client.get(f"/api/images/{i}").json()["status"] for i in failed] == ["succeeded", "succeeded"]
    nothing = client.post("/api/bulk/retry", json={"post_id": made["post"]})
    assert nothing.status_code == 409

    analytics = client.get("/api/analytics", params={"by": "provider"}, headers=READ_AUTH)
    assert analytics.status_code == 200, analytics.text
    [fake] = analytics.json()["rows"]
    # 2 made at once, 2 refused twice and then made: 8 calls, 4 ok, 4 accepted, nothing made twice.
    assert (fake["key"], fake["calls"], fake["ok_calls"], fake["accepted_images"]) == ("fake", 8, 4, 4)
    assert fake["regeneration_rate"] == 0 and fake["calls_per_accepted_image"] == 2
    assert fake["cost_per_accepted_image"] == pytest.approx(fake["cost_usd"] / 4)
    assert analytics.json()["total"]["calls"] == 8


def test_storage_by_format_and_ratings(client: TestClient, made: dict[str, int]) -> None:
    for prompt, rating in (("a calm harbour", 5), ("a quiet lake", 2)):
        assert client.put(f"/api/images/{made[prompt]}", json={"rating": rating}).status_code == 200
    body = client.get("/api/analytics", params={"by": "month", "days": 31}).json()
    assert len(body["rows"]) == 1 and body["rows"][0]["accepted_images"] == 2 and body["since"]
    storage = {(item["role"], item["format"]): item for item in body["storage"]}
    # The fake provider's flat pictures get a PNG master when that is smaller (quality_search.py).
    [master_format] = {image_format for role, image_format in storage if role == "master"}
    assert master_format in {"jpeg", "png"}
    assert set(storage) == {("master", master_format), ("variant", "avif"), ("variant", "webp")}
    master = storage[("master", master_format)]
    assert master["files"] == 2
    assert master["bytes_saved"] == master["bytes_original"] - master["bytes_stored"]
    # Widths 48 and 64 (the image's own) in two formats, for two images.
    assert storage[("variant", "webp")]["files"] == 4 and storage[("variant", "avif")]["files"] == 4
    [rating] = body["ratings"]
    assert (rating["provider"], rating["model"], rating["rated_images"], rating["mean_rating"]) == (
        "fake", "fake-1", 2, 3.5)
    assert rating["counts"] == {"2": 1, "5": 1}
    assert client.get("/api/analytics", params={"by": "week"}).status_code == 422


def test_delete_a_posts_images_rows_then_files(client: TestClient, made: dict[str, int],
                                               storage: MemoryStorage) -> None:
    made_ids = [made["a calm harbour"], made["a quiet lake"]]
    keys = {variant_or_master for image_id in made_ids for variant_or_master in _keys(client, image_id)}
    assert keys <= set(storage.files)
    assert client.delete(f"/api/posts/{made['post']}/images", headers=READ_AUTH).status_code == 403
    assert client.delete("/api/posts/999999/images").status_code == 404
    deleted = client.delete(f"/api/posts/{made['post']}/images")
    assert deleted.status_code == 200, deleted.text
    body = deleted.json()
    assert sorted(body["deleted"]) == sorted(made[p["prompt"]] for p in PROMPTS) and body["running"] == []
    assert set(body["files_deleted"]) == keys and not keys & set(storage.files)
    assert all(client.get(f"/api/images/{made[p['prompt']]}").status_code == 404 for p in PROMPTS)
    assert client.get("/api/posts").status_code == 200  # the post itself stays


def test_remake_variants_and_prune_events(client: TestClient, made: dict[str, int]) -> None:
    assert client.post("/api/bulk/remake-variants", headers=READ_AUTH).status_code == 403
    first = client.post("/api/bulk/remake-variants", params={"limit": 1})
    assert first.status_code == 200, first.text
    # The settings are those the images were made with: nothing lacks.
    assert first.json()["variants_added"] == 0 and first.json()["images_seen"] == 1
    assert first.json()["next_after_id"] == made["a calm harbour"]
    rest = client.post("/api/bulk/remake-variants", params={"after_id": first.json()["next_after_id"]}).json()
    assert rest["images_seen"] == 1 and rest["next_after_id"] is None
    pruned = client.post("/api/bulk/prune-events")
    assert pruned.status_code == 200 and pruned.json() == {"deleted": 0, "retention_days": 30.0}
    assert client.post("/api/bulk/prune-events", params={"days": 0}).status_code == 422


def _keys(client: TestClient, image_id: int) -> set[str]:
    image = client.get(f"/api/images/{image_id}").json()
    urls = [image["url"], image["thumbnail_url"], *(variant["url"] for variant in image["variants"])]
    return {url.removeprefix("memory://") for url in urls}
