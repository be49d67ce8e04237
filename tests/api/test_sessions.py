"""The page's sign-in: a session cookie kept in the catalogue (every process, every restart), its
flags, sign-out, keys removed from the settings, and CSRF for everything the cookie changes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import Request
from starlette.testclient import TestClient

from blogimg.api.app import create_app
from blogimg.api.auth import Role, csrf_token, keys_configured, request_role
from blogimg.config import Settings
from blogimg.db.database import Database
from blogimg.storage import MemoryStorage
from tests.support import API_KEY, READ_KEY, on_both_engines

COOKIE = "blogimg_session"
PROMPT = {"prompts": [{"prompt": "a lighthouse"}]}
OTHER_SITE = "https://evil.example.test"


@contextmanager
def app_client(settings: Settings, base_url: str = "http://testserver") -> Iterator[TestClient]:
    """A client of a new app over ``settings``, with a route that says what the page would be told."""
    app = create_app(settings, storage=MemoryStorage())

    @app.get("/test/whoami")
    async def whoami(request: Request) -> dict[str, Any]:
        role = request_role(request)
        return {"role": role.value if role else None, "csrf": csrf_token(request),
                "keys": keys_configured(request)}

    with TestClient(app, base_url=base_url) as client:
        yield client


def sign_in(client: TestClient, key: str, next_path: str = "/") -> str:
    """Sign in through the form; the new session cookie's value."""
    answer = client.post("/sign-in", data={"key": key, "next": next_path}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return answer.cookies[COOKIE]


def token(client: TestClient) -> str:
    csrf = client.get("/test/whoami").json()["csrf"]
    assert csrf
    return str(csrf)


def test_signing_in_sets_a_strict_http_only_cookie_and_goes_on(api_settings: Settings) -> None:
    with app_client(api_settings) as client:
        answer = client.post("/sign-in", data={"key": API_KEY, "next": "/gallery?status=failed"},
                             follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == "/gallery?status=failed"
        flags = [part.strip().lower() for part in answer.headers["set-cookie"].split(";")]
        assert flags[0].startswith(f"{COOKIE}=") and "httponly" in flags and "samesite=strict" in flags
        assert "path=/" in flags and "secure" not in flags  # plain http: a Secure cookie would never come back
        assert f"max-age={12 * 3600}" in flags
        assert client.get("/test/whoami").json() == {"role": "full", "csrf": token(client), "keys": True}
        assert client.get("/api/images/search").status_code == 200
    with app_client(api_settings, base_url="https://testserver") as client:
        answer = client.post("/sign-in", data={"key": API_KEY}, follow_redirects=False)
        assert "secure" in [part.strip().lower() for part in answer.headers["set-cookie"].split(";")]


def test_the_page_embeds_the_csrf_token(api_settings: Settings) -> None:
    with app_client(api_settings) as client:
        sign_in(client, API_KEY)
        page = client.get("/gallery")
        assert page.status_code == 200
        assert f'<meta name="csrf-token" content="{token(client)}">' in page.text


def test_the_form_has_a_labelled_key_field_and_a_wrong_key_is_refused(api_settings: Settings) -> None:
    with app_client(api_settings) as client:
        form = client.get("/sign-in?next=/posts").text
        assert '<label class="sign-in__label" for="sign-in-key">API key</label>' in form
        assert 'type="password" autocomplete="current-password"' in form
        assert 'name="next" value="/posts"' in form and 'role="alert"' not in form
        wrong = client.post("/sign-in", data={"key": "guess", "next": "/posts"}, follow_redirects=False)
        assert wrong.status_code == 401 and COOKIE not in wrong.cookies
        assert wrong.text.count('role="alert"') == 1 and "not valid" in wrong.text
        assert client.get("/test/whoami").status_code == 401


def test_guessing_fast_is_stopped(api_settings: Settings) -> None:
    with app_client(api_settings) as client:
        statuses = [client.post("/sign-in", data={"key": f"guess-{n}"}).status_code for n in range(12)]
        assert statuses[:10] == [401] * 10 and statuses[10:] == [429, 429]
        limited = client.post("/sign-in", data={"key": API_KEY}, follow_redirects=False)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
        assert COOKIE not in limited.cookies and "Too many wrong keys" in limited.text


@pytest.mark.parametrize("target", ["https://evil.example.test/", "//evil.example.test/x", "/\\evil.example.test",
                                    "javascript:alert(1)", "http:/evil.example.test", "evil.example.test",
                                    "/\tevil", ""])
def test_next_never_leads_off_the_site(api_settings: Settings, target: str) -> None:
    with app_client(api_settings) as client:
        answer = client.post("/sign-in", data={"key": API_KEY, "next": target}, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == "/"
        assert 'name="next" value="/"' in client.get("/sign-in", params={"next": target}).text


def test_sign_out_ends_the_session_and_the_old_cookie_no_longer_works(api_settings: Settings) -> None:
    with app_client(api_settings) as client:
        cookie = sign_in(client, API_KEY)
        csrf = token(client)
        refused = client.post("/sign-out", follow_redirects=False)  # no token: another site cannot sign us out
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf"
        assert client.get("/api/images/search").status_code == 200
        out = client.post("/sign-out", data={"csrf_token": csrf}, follow_redirects=False)
        assert out.status_code == 303 and out.headers["location"] == "/sign-in"
        assert 'blogimg_session=""' in out.headers["set-cookie"] and "Max-Age=0" in out.headers["set-cookie"]
        client.cookies.set(COOKIE, cookie)  # the old value, kept by someone
        assert client.get("/api/images/search").status_code == 401


def test_a_read_only_sign_in_sees_everything_and_changes_nothing(api_settings: Settings) -> None:
    with app_client(api_settings) as client:
        sign_in(client, READ_KEY)
        assert client.get("/test/whoami").json()["role"] == Role.READ
        assert client.get("/api/images/search").status_code == 200
        answer = client.post("/api/images/generate", json=PROMPT, headers={"X-CSRF-Token": token(client)})
        assert answer.status_code == 403 and answer.json()["error"]["code"] == "forbidden"


def test_a_cross_site_form_post_is_refused(api_settings: Settings) -> None:
    with app_client(api_settings) as client:
        sign_in(client, API_KEY)
        csrf = token(client)
        queued = client.post("/api/images/generate", json=PROMPT, headers={"X-CSRF-Token": csrf})
        assert queued.status_code == 202, queued.text
        image = queued.json()["image_ids"][0]
        # What a page elsewhere can make the browser send: the cookie, a form, no token or its own Origin.
        for form, headers in (({}, {}), ({}, {"Origin": OTHER_SITE}), ({"csrf_token": "made-up"}, {}),
                              ({"csrf_token": csrf}, {"Origin": OTHER_SITE}), ({"csrf_token": csrf}, {"Origin": "null"})):
            forged = client.post(f"/api/images/{image}/retry", data=form, headers=headers)
            assert forged.status_code == 403 and forged.json()["error"]["code"] == "csrf", (form, headers)
            deleted = client.delete(f"/api/images/{image}", headers=headers)
            assert deleted.status_code == 403, headers
        # The page itself: its token, in the form or the header, from its own origin.
        own = client.post(f"/api/images/{image}/retry", data={"csrf_token": csrf},
                          headers={"Origin": "http://testserver"})
        assert own.status_code == 409  # allowed through; the image is queued, not failed
        assert client.get(f"/api/images/{image}").status_code == 200  # never deleted
        # A bearer key is never sent by a browser on its own: no token needed.
        client.cookies.clear()
        assert client.delete(f"/api/images/{image}", headers={"Authorization": f"Bearer {API_KEY}",
                                                               "Origin": OTHER_SITE}).status_code == 204


def test_the_event_stream_takes_the_session_cookie(api_settings: Settings) -> None:
    with app_client(api_settings) as client:
        sign_in(client, READ_KEY)
        client.post("/api/images/generate", json=PROMPT, headers={"Authorization": f"Bearer {API_KEY}"})
        stream = client.get("/api/events", params={"after": 0, "limit": 1})
        assert stream.status_code == 200 and "event: image" in stream.text


def test_removing_a_key_or_changing_its_role_ends_its_sessions(api_settings: Settings) -> None:
    with app_client(api_settings) as client:
        cookie = sign_in(client, API_KEY)
    for keys in ({"api_keys": ["another-key"]}, {"api_keys": ["another-key"], "api_read_keys": [API_KEY]}):
        with app_client(api_settings.model_copy(update=keys)) as client:
            client.cookies.set(COOKIE, cookie)
            assert client.get("/api/images/search").status_code == 401, keys
    with app_client(api_settings) as client:  # the key is back: the session was never deleted, only refused
        client.cookies.set(COOKIE, cookie)
        assert client.get("/api/images/search").status_code == 200


def test_a_session_ends_when_it_expires(api_settings: Settings) -> None:
    with app_client(api_settings.model_copy(update={"session_hours": 1 / 3600})) as client:
        cookie = sign_in(client, API_KEY)
        assert client.get("/api/images/search").status_code == 200
        time.sleep(1.2)
        client.cookies.set(COOKIE, cookie)
        assert client.get("/api/images/search").status_code == 401


@on_both_engines
def test_sessions_are_shared_by_every_app_on_the_catalogue(api_settings: Settings) -> None:
    with app_client(api_settings) as first, app_client(api_settings) as second:
        cookie = sign_in(first, API_KEY)
        second.cookies.set(COOKIE, cookie)
        assert second.get("/api/images/search").status_code == 200
        csrf = token(second)
        assert csrf == token(first)
        assert second.post("/api/images/generate", json=PROMPT, headers={"X-CSRF-Token": csrf}).status_code == 202
        assert second.post("/sign-out", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
        assert first.get("/api/images/search").status_code == 401  # signed out everywhere at once
    with app_client(api_settings) as before_restart:  # and a sign-in outlives a restart
        kept = sign_in(before_restart, READ_KEY)
    with app_client(api_settings) as after_restart:
        after_restart.cookies.set(COOKIE, kept)
        assert after_restart.get("/test/whoami").json()["role"] == "read"


@on_both_engines
def test_the_catalogue_keeps_no_token_and_no_key(api_settings: Settings) -> None:
    with app_client(api_settings) as client:
        cookie = sign_in(client, API_KEY)
        csrf = token(client)

    async def rows() -> list[tuple[Any, ...]]:
        database = await Database.open(api_settings.database_url)
        try:
            async with database.engine.connect() as connection:
                result = await connection.execute(sa.text("SELECT * FROM web_sessions"))
                return [tuple(row) for row in result]
        finally:
            await database.close()

    stored = asyncio.run(rows())
    assert len(stored) == 1 and "full" in stored[0]
    text = repr(stored)
    assert cookie not in text and csrf not in text and API_KEY not in text


def test_signing_in_again_ends_the_session_the_browser_held(api_settings: Settings) -> None:
    with app_client(api_settings) as client:
        first = sign_in(client, READ_KEY)
        second = sign_in(client, API_KEY)  # the browser still sends the first cookie with this form
        assert second != first
        client.cookies.clear()
        client.cookies.set(COOKIE, first)  # the old value, kept by someone
        assert client.get("/api/images/search").status_code == 401
        client.cookies.clear()
        client.cookies.set(COOKIE, second)
        assert client.get("/test/whoami").json()["role"] == Role.FULL.value


def test_sign_in_and_sign_out_stay_under_a_proxy_prefix(api_settings: Settings) -> None:
    app = create_app(api_settings, storage=MemoryStorage())
    with TestClient(app, root_path="/blog") as client:
        assert 'action="/blog/sign-in"' in client.get("/blog/sign-in").text
        assert 'action="/blog/sign-in"' in client.post("/blog/sign-in", data={"key": "wrong"}).text
        sign_in_answer = client.post("/blog/sign-in", data={"key": API_KEY}, follow_redirects=False)
        assert sign_in_answer.status_code == 303
        out = client.post("/blog/sign-out", data={"csrf_token": "x"}, follow_redirects=False)
        assert out.status_code == 403  # still signed in: the token is checked first
        client.cookies.clear()
        out = client.post("/blog/sign-out", follow_redirects=False)
        assert (out.status_code, out.headers["location"]) == (303, "/blog/sign-in")
