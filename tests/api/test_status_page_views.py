"""The status page's overview, gallery and posts views, in-process (no browser): they render from a
real catalogue, need a key like the API, say what is wrong with a bad query, and ship their assets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from blogimg.api.app import create_app
from blogimg.config import Settings
from blogimg.storage import MemoryStorage
from tests.support import READ_AUTH, make_images

VIEWS = ("/", "/overview/live", "/overview/series", "/gallery", "/gallery/results", "/posts", "/posts/list")


@pytest.mark.parametrize("path", VIEWS)
def test_every_view_renders_for_a_key_and_sends_a_person_without_one_to_sign_in(
        path: str, client: TestClient, client_without_key: TestClient) -> None:
    answer = client.get(path)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    assert answer.headers["cache-control"] == "no-store"
    refused = client_without_key.get(path, headers={"Accept": "text/html"}, follow_redirects=False)
    assert (refused.status_code, refused.headers["location"]) == (303, f"/sign-in?next={path}")


def test_the_views_show_what_the_catalogue_holds(client: TestClient, api_settings: Settings,
                                                 storage: MemoryStorage) -> None:
    made = client.post("/api/images/generate", json={"prompts": [{"prompt": "a lighthouse at dusk"},
                                                                 {"prompt": "a cup of tea", "kind": "cover"}]})
    assert made.status_code == 202
    make_images(api_settings, storage)
    ids = made.json()["image_ids"]

    gallery = client.get("/gallery").text
    assert all(f'href="/images/{image_id}"' in gallery for image_id in ids)
    assert gallery.count('loading="lazy"') == 2 and "background-image: url('data:image/" in gallery
    only_cover = client.get("/gallery", params={"kind": "cover"}).text
    assert f'data-image-id="{ids[1]}"' in only_cover and f'data-image-id="{ids[0]}"' not in only_cover
    found = client.get("/gallery/results", params={"q": "lighthouse", "status": "succeeded"}).text
    assert f'data-image-id="{ids[0]}"' in found and f'data-image-id="{ids[1]}"' not in found

    overview = client.get("/").text
    assert re.search(r'class="stat__label">.*?Succeeded</span>\s*<span class="stat__value">2<', overview, re.S)
    assert "no budget" in overview and 'id="chart-data"' in overview
    posts = client.get("/posts").text
    assert posts.count("/images/") >= 2 and "Total cost" in posts


def test_a_bad_query_is_one_clear_message_and_a_422(client: TestClient) -> None:
    answer = client.get("/gallery", params={"status": "lost", "post": "-3", "date_to": "soon", "cursor": "x"})
    assert answer.status_code == 422
    for message in ("status: one of queued, running, succeeded, failed", "post: a post&#39;s id",
                    "date to: a date as YYYY-MM-DD"):
        assert message in answer.text
    assert client.get("/posts", params={"cursor": "not-a-cursor"}).status_code == 422
    # htmx swaps no 4xx in: a region asked by htmx gets the message with a 200.
    assert client.get("/gallery/results", params={"cursor": "x"}, headers={"HX-Request": "true"}).status_code == 200


def test_a_read_only_key_sees_the_views_without_a_control_that_changes_anything(client: TestClient) -> None:
    for path in ("/", "/gallery", "/posts"):
        page = client.get(path, headers=READ_AUTH).text
        assert not re.search(r"hx-(post|put|delete|patch)=", page)
        assert all(method.lower() == "get" for method in re.findall(r'<form[^>]*method="(\w+)"', page))


def test_the_assets_are_served_without_a_key(client_without_key: TestClient) -> None:
    page_assets = ("/static/app.css", "/static/live.js", "/static/theme.js", "/static/charts.js",
                   "/static/vendor/htmx.org/htmx-2.0.11.min.js", "/static/vendor/uplot/uPlot-1.6.32.iife.min.js",
                   "/static/vendor/uplot/uPlot-1.6.32.min.css")
    for path in page_assets:
        assert client_without_key.get(path).status_code == 200, path


def test_stored_files_never_cover_the_page_assets(api_settings: Settings, tmp_path: Path) -> None:
    # A base URL of /static/ would put the stored files over the page's assets: they go to /files.
    settings = api_settings.model_copy(update={"public_base_url": "/static/", "storage": "local",
                                               "storage_path": tmp_path / "images"})
    (tmp_path / "images" / "ab").mkdir(parents=True)
    (tmp_path / "images" / "ab" / "file.webp").write_bytes(b"stored")
    with TestClient(create_app(settings)) as client:
        assert client.get("/static/app.css").status_code == 200
        assert client.get("/files/ab/file.webp").content == b"stored"
