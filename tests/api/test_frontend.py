"""What a front end on another origin needs: CORS, a post listing, where each image goes, cacheable
files served at the base URL's path, docs that load offline, and plain words for a broken body."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from pydantic import ValidationError
from starlette.testclient import TestClient

from blogimg.api.app import create_app
from blogimg.config import Settings
from blogimg.storage import MemoryStorage
from blogimg.storage.factory import build_storage
from tests.support import AUTH, make_images, on_both_engines

ORIGIN = "https://blog.example.test"
KEY = "ab/cd/0123456789abcdef.webp"
POST = """---
title: Harbour at dawn
tags: [sea]
---
Intro.

<!-- image: a lighthouse in fog -->

More text.

<!-- image: fishing boats at rest -->
"""


def _store_a_file(settings: Settings) -> bytes:
    path = settings.storage_path / KEY
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF-not-really-webp")
    return path.read_bytes()


def _local(api_settings: Settings, base: str) -> Settings:
    return api_settings.model_copy(update={"storage": "local", "public_base_url": base})


# --- #7: files served at the path of an absolute base URL ------------------------------------


def test_files_are_served_at_the_path_of_an_absolute_base_url(api_settings: Settings) -> None:
    settings = _local(api_settings, "http://127.0.0.1:8000/files")
    stored = _store_a_file(settings)
    url = build_storage(settings).url(KEY)
    assert url == f"http://127.0.0.1:8000/files/{KEY}"
    with TestClient(create_app(settings)) as client:
        response = client.get(urlsplit(url).path)
    assert response.status_code == 200
    assert response.content == stored


@pytest.mark.parametrize("base", ["https://cdn.example.test/", "/", "https://cdn.example.test/api"])
def test_a_base_url_over_the_api_serves_files_under_files_and_leaves_the_api_alone(
        api_settings: Settings, base: str, caplog: pytest.LogCaptureFixture) -> None:
    settings = _local(api_settings, base)
    stored = _store_a_file(settings)
    with (caplog.at_level(logging.WARNING, logger="blogimg.api.files"),
          TestClient(create_app(settings), headers=AUTH) as client):
        assert client.get(f"/files/{KEY}").content == stored
        assert client.get("/healthz").status_code == 200
        assert client.get("/api/images/search").json() == {"items": [], "next_cursor": None}
        # Our JSON error shape, not a file server's answer, for what the API itself refuses.
        assert client.post("/api/images/stats").json()["error"]["code"] == "method_not_allowed"
    assert any("/files/" in record.getMessage() and base in record.getMessage() for record in caplog.records)


# --- #8a: CORS ------------------------------------------------------------------------------


@pytest.fixture
def cors_client(api_settings: Settings) -> Iterator[TestClient]:
    settings = api_settings.model_copy(update={"cors_origins": [ORIGIN]})
    with TestClient(create_app(settings, storage=MemoryStorage())) as test_client:
        yield test_client


def test_cors_lets_a_listed_origin_send_a_key_and_an_idempotency_key(cors_client: TestClient) -> None:
    preflight = cors_client.options("/api/images/generate", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, idempotency-key, content-type"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    allowed = {name.strip().lower() for name in preflight.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "idempotency-key", "content-type"} <= allowed
    answer = cors_client.get("/api/images/search", headers={"Origin": ORIGIN})
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    # An error response carries the header too, or the browser hides the real error.
    refused = cors_client.post("/api/posts", json={"markdown": "x"}, headers={"Origin": ORIGIN})
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == ORIGIN
    stranger = cors_client.get("/api/images/search", headers={"Origin": "https://elsewhere.test"})
    assert "access-control-allow-origin" not in stranger.headers


def test_without_cors_origins_no_cors_headers(client: TestClient) -> None:
    answer = client.get("/api/images/search", headers={"Origin": ORIGIN})
    assert not [name for name in answer.headers if name.lower().startswith("access-control-")]


def test_cors_origins_come_from_the_environment_as_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLOGIMG_CORS_ORIGINS", f"{ORIGIN}, http://localhost:5173")
    assert Settings().cors_origins == [ORIGIN, "http://localhost:5173"]
    assert Settings(cors_origins=[]).cors_origins == []
    with pytest.raises(ValidationError, match="no path"):
        Settings(cors_origins=[f"{ORIGIN}/"])  # a browser's Origin never ends in a slash


# --- #8b: GET /api/posts ----------------------------------------------------------------------


@on_both_engines
def test_posts_are_listed_newest_first_in_cursor_pages_and_found_by_slug(
        client: TestClient, api_settings: Settings, storage: MemoryStorage) -> None:
    for slug in ("first", "second"):
        assert client.post("/api/posts", json={"markdown": f"# {slug}\n\ntext", "slug": slug},
                           headers=AUTH).status_code == 201
    saved = client.post("/api/posts", json={"markdown": POST, "slug": "harbour", "enqueue": True}, headers=AUTH)
    assert saved.status_code == 201

    first = client.get("/api/posts", params={"limit": 2}).json()
    assert [item["slug"] for item in first["items"]] == ["harbour", "second"]
    assert first["next_cursor"]
    rest = client.get("/api/posts", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [item["slug"] for item in rest["items"]] == ["first"] and rest["next_cursor"] is None

    make_images(api_settings, storage)
    found = client.get("/api/posts", params={"slug": "harbour"}).json()
    assert found["next_cursor"] is None
    [item] = found["items"]
    prompts = len(saved.json()["prompts"])
    assert prompts == 3  # the cover and two markers
    assert item["id"] == saved.json()["id"] and item["title"] == "Harbour at dawn"
    assert (item["prompt_count"], item["image_count"], item["succeeded_count"]) == (prompts, prompts, prompts)
    assert item["created_at"].endswith(("Z", "+00:00"))
    assert client.get("/api/posts", params={"slug": "missing"}).json() == {"items": [], "next_cursor": None}
    assert client.get("/api/posts", params={"cursor": "nonsense!"}).status_code == 422


# --- #8c: where each image goes -----------------------------------------------------------------


def test_an_image_says_its_kind_and_position_from_its_prompt(client: TestClient) -> None:
    saved = client.post("/api/posts", json={"markdown": POST, "slug": "harbour", "enqueue": True},
                        headers=AUTH).json()
    expected = {prompt["id"]: (prompt["kind"], prompt["position"]) for prompt in saved["prompts"]}
    assert sorted(kind for kind, _ in expected.values()) == ["cover", "inline", "inline"]
    images = client.get(f"/api/images/blog/{saved['id']}").json()["items"]
    assert {image["prompt_id"]: (image["kind"], image["position"]) for image in images} == expected
    one = client.get(f"/api/images/{images[0]['id']}").json()
    assert (one["kind"], one["position"]) == expected[one["prompt_id"]]


# --- #8d: content-addressed files are cached for good ---------------------------------------------


def test_stored_files_are_served_immutable(api_settings: Settings) -> None:
    settings = _local(api_settings, "/files/")
    _store_a_file(settings)
    with TestClient(create_app(settings)) as client:
        served = client.get(f"/files/{KEY}")
        missing = client.get("/files/ab/cd/nothing-here.webp")
    assert served.status_code == 200
    assert served.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert missing.status_code == 404 and "immutable" not in missing.headers.get("cache-control", "")


# --- #8e: /docs with no network -------------------------------------------------------------------


def test_docs_load_everything_from_the_app_itself(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    assert not re.findall(r"https?://", page.text), "the docs page must not reach outside the app"
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert len(assets) == 3  # script, stylesheet, icon
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
    assert '"validatorUrl": null' in page.text  # Swagger UI would send the schema to validator.swagger.io


def test_the_vendored_swagger_ui_ships_with_its_licence() -> None:
    import blogimg.api

    folder = Path(blogimg.api.__file__).parent / "static" / "swagger-ui"
    assert "Apache License" in (folder / "LICENSE").read_text()
    assert (folder / "swagger-ui-bundle.js").stat().st_size > 100_000


# --- #8f: a body that is not JSON -------------------------------------------------------------------


@pytest.mark.parametrize(("body", "where"), [
    ("not json", "Expecting value at line 1 column 1"),
    ('{\n  "markdown": nope}', "Expecting value at line 2 column 15"),
])
def test_a_body_that_is_not_json_is_named_as_such(client: TestClient, body: str, where: str) -> None:
    answer = client.post("/api/posts", content=body,
                         headers={**AUTH, "Content-Type": "application/json"})
    assert answer.status_code == 422
    assert answer.json()["error"] == {"code": "validation", "message": f"request body is not valid JSON: {where}"}
