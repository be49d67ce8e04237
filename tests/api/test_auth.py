"""Keys and roles: with keys configured every route of the app needs one — found by walking the
app's routes, so a route added later is checked too — and a read-only key changes nothing."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from pydantic import ValidationError
from starlette.routing import Mount
from starlette.testclient import TestClient

from blogimg.api.app import create_app
from blogimg.cli.output import load_settings
from blogimg.config import Settings
from blogimg.errors import BlogimgError, ConfigurationError
from blogimg.storage import MemoryStorage
from tests.support import API_KEY, AUTH, READ_AUTH, READ_KEY, make_images

#: Routes anyone may call, and what is mounted (files, the page's assets, the docs' assets).
OPEN_ROUTES = {"/healthz", "/sign-in", "/sign-out", "/docs", "/openapi.json"}
OPEN_MOUNTS = {"files", "static", "docs-assets"}
SAFE = {"GET", "HEAD", "OPTIONS"}
JSON = {"Accept": "application/json"}
POST = "---\ntitle: Harbour\n---\n<!-- image: a harbour at dusk -->\n"


def routes(app: FastAPI) -> Iterator[tuple[str, str]]:
    """(method, path with every parameter 1) of every route; mounts must be open ones."""
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, Mount):
            assert route.name in OPEN_MOUNTS, f"mount {route.path} ({route.name}) is not known to be open"
            continue
        path, methods = context.path_format, context.methods
        assert path and methods, f"a route of a kind this test cannot check: {route!r}"
        for method in sorted(methods - {"HEAD"}):
            yield method, re.sub(r"\{[^}]+\}", "1", path)


@pytest.fixture
def app(api_settings: Settings) -> FastAPI:
    return create_app(api_settings, storage=MemoryStorage())


def test_every_route_but_the_open_ones_needs_a_key(app: FastAPI) -> None:
    checked = set()
    with TestClient(app) as client:
        for method, path in routes(app):
            if path in OPEN_ROUTES:
                continue
            for headers in ({}, {"Authorization": "Bearer not-a-key"}, {"Authorization": "Basic dGVzdA=="},
                            {"Cookie": "blogimg_session=forged"}):
                answer = client.request(method, path, headers=JSON | headers, follow_redirects=False)
                assert answer.status_code == 401, (method, path, headers, answer.status_code, answer.text[:200])
                assert answer.json()["error"]["code"] == "unauthorized"
            checked.add((method, path))
    # The walk reached the API, the service routes and the page alike.
    assert {("POST", "/api/images/generate"), ("GET", "/api/images/search"), ("GET", "/api/events"),
            ("GET", "/metrics"), ("GET", "/"), ("DELETE", "/api/images/1")} <= checked
    assert len(checked) >= 20


def test_the_open_routes_answer_without_a_key(client_without_key: TestClient, storage: MemoryStorage) -> None:
    assert client_without_key.get("/healthz").json()["status"] == "ok"
    assert client_without_key.get("/docs").status_code == 200
    assert client_without_key.get("/openapi.json").status_code == 200
    assert client_without_key.get("/sign-in").status_code == 200
    assert client_without_key.get("/static/app.css").status_code == 200


def test_a_person_opening_a_page_is_sent_to_sign_in_and_the_api_answers_401(client_without_key: TestClient) -> None:
    page = client_without_key.get("/gallery?status=failed", headers={"Accept": "text/html,*/*"},
                                  follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/sign-in?next=/gallery%3Fstatus%3Dfailed"
    api = client_without_key.get("/api/images/search", headers={"Accept": "text/html,*/*"})
    assert api.status_code == 401 and api.headers["www-authenticate"] == "Bearer"
    fragment = client_without_key.get("/gallery", headers={"HX-Request": "true",
                                                           "HX-Current-URL": "http://testserver/gallery?q=x"})
    assert fragment.status_code == 401 and fragment.headers["hx-redirect"] == "/sign-in?next=/gallery%3Fq%3Dx"


def test_a_read_only_key_reads_everything_and_changes_nothing(
        app: FastAPI, api_settings: Settings, storage: MemoryStorage) -> None:
    app = create_app(api_settings, storage=storage)
    with TestClient(app) as client:
        post = client.post("/api/posts", json={"markdown": POST, "enqueue": True}, headers=AUTH)
        assert post.status_code == 201, post.text
        make_images(api_settings, storage)  # image 1, post 1 and prompt 1 exist: reads find them
        for path in ("/api/images/search", "/api/images/stats", "/api/images/1", "/api/posts", "/metrics",
                     f"/api/batches/{post.json()['batch_id']}", "/api/images/blog/1"):
            answer = client.get(path, headers=READ_AUTH)
            assert answer.status_code == 200, (path, answer.text[:200])
        changes = 0
        for method, path in routes(app):
            if path in OPEN_ROUTES:
                continue
            if method in SAFE:
                if path != "/api/events":  # a stream that never ends; its key check is the 401 test's
                    answer = client.request(method, path, headers=READ_AUTH)
                    assert answer.status_code not in {401, 403}, (method, path, answer.text[:200])
                continue
            answer = client.request(method, path, headers=READ_AUTH, json={"prompts": [{"prompt": "x"}]})
            assert answer.status_code == 403, (method, path, answer.text[:200])
            assert answer.json()["error"]["code"] == "forbidden"
            changes += 1
        assert changes >= 7
        assert client.get("/api/images/1", headers=READ_AUTH).json()["status"] == "succeeded"  # still there


def test_a_full_key_changes_things(client: TestClient) -> None:
    answer = client.post("/api/images/generate", json={"prompts": [{"prompt": "a kite"}]})
    assert answer.status_code == 202, answer.text


def test_metrics_need_a_key_and_take_a_bearer_token(client_without_key: TestClient) -> None:
    assert client_without_key.get("/metrics").status_code == 401
    scraped = client_without_key.get("/metrics", headers=READ_AUTH)
    assert scraped.status_code == 200 and "blogimg_images" in scraped.text


def test_the_schema_declares_the_key_on_every_route_but_the_open_ones(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "session"}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if path in OPEN_ROUTES:
                assert "security" not in operation, path
                continue
            assert operation["security"] == [{"bearer": []}, {"session": []}], (method, path)
            assert "401" in operation["responses"]
            if method.upper() not in SAFE:
                assert "403" in operation["responses"], (method, path)


def test_with_no_keys_everything_is_open(settings: Settings) -> None:
    with TestClient(create_app(settings, storage=MemoryStorage())) as client:
        assert client.get("/api/images/search").status_code == 200
        assert client.post("/api/images/generate", json={"prompts": [{"prompt": "a kite"}]}).status_code == 202
        assert client.get("/metrics").status_code == 200
        # Nothing to sign in to: on to where the person was going.
        sign_in = client.get("/sign-in?next=/gallery", follow_redirects=False)
        assert sign_in.status_code == 303 and sign_in.headers["location"] == "/gallery"


def test_read_keys_come_from_the_environment_and_a_key_has_one_role(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLOGIMG_API_READ_KEYS", "reader-1, reader-2")
    monkeypatch.setenv("BLOGIMG_SESSION_HOURS", "2.5")
    loaded = Settings()
    assert loaded.api_read_keys == ["reader-1", "reader-2"] and loaded.session_hours == 2.5
    monkeypatch.setenv("BLOGIMG_API_KEYS", "writer,reader-2")
    with pytest.raises(ValidationError, match="both BLOGIMG_API_KEYS and BLOGIMG_API_READ_KEYS"):
        Settings()
    with pytest.raises(BlogimgError) as refused:
        load_settings()
    message = str(refused.value)
    assert message.startswith("setting BLOGIMG_API_READ_KEYS: a key is in both") and "\n" not in message
    assert "reader-2" not in message  # a key is never printed


def test_an_app_refuses_a_key_in_both_roles(settings: Settings) -> None:
    both = settings.model_copy(update={"api_keys": [API_KEY], "api_read_keys": [API_KEY, READ_KEY]})
    with pytest.raises(ConfigurationError, match="give each key one role"):
        create_app(both, storage=MemoryStorage())
