"""The status page's overview, gallery and posts views, in-process (no browser): they render from a
real catalogue, need a key like the API, say what is wrong with a bad query, and ship their assets."""

from __future__ import annotations

import asyncio
import base64
import html
import re
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.testclient import TestClient

from blogimg.api.app import create_app
from blogimg.config import Settings
from blogimg.db.tables import GeneratedImage
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
    assert gallery.count('loading="lazy"') == 2 and "background-image: url(data:image/" in gallery
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


FILTERED_VIEWS = ("/gallery", "/gallery/results", "/failures", "/failures/results")


def test_edge_and_hostile_filters_are_one_clear_message_never_a_500(client: TestClient) -> None:
    # The last day there is has no day after it: the range is open at the end, not an OverflowError.
    for path in FILTERED_VIEWS:
        for params in ({"date_to": "9999-12-31"}, {"date_from": "9999-12-31", "date_to": "9999-12-31"},
                       {"date_from": "0001-01-01"}, {"date_to": "0001-01-01"}):
            assert client.get(path, params=params).status_code == 200, (path, params)
    bad = [({"date_from": "2025-05-02", "date_to": "2025-05-01"}, "date from: on or before date to"),
           ({"post": "9" * 30}, "post: a post&#39;s id"), ({"post": "2147483648"}, "post: a post&#39;s id"),
           ({"post": "0"}, "post: a post&#39;s id"), ({"date_to": "+10000-01-01"}, "date to: a date as YYYY-MM-DD"),
           ({"q": "x" * 201}, "q: at most 200 characters")]
    for path in FILTERED_VIEWS:
        for params, message in bad:
            answer = client.get(path, params=params)
            assert (answer.status_code, message in answer.text) == (422, True), (path, params)
            assert client.get(path, params=params, headers={"HX-Request": "true"}).status_code == 200
    # Cursors the server never issued: garbage, an id past the largest, a time with an offset.
    for cursor in ("x", "\x00", base64.urlsafe_b64encode(b"2025-01-01T00:00:00|99999999999").decode(),
                   base64.urlsafe_b64encode(b"2025-01-01T00:00:00+02:00|5").decode(), "9" * 200):
        for path in ("/gallery", "/posts"):
            answer = client.get(path, params={"cursor": cursor})
            assert answer.status_code == 422 and "cursor" in answer.text, (path, cursor)
        assert client.get("/posts/list", params={"cursor": cursor}, headers={"HX-Request": "true"}).status_code == 200
    # An image id that names nothing, or is no id at all: a 404 page (its live region, which htmx
    # swaps in, says the image is gone with a 200), never a database error.
    for image_id in ("0", "-1", "2147483648", "9" * 30, "1e3", "abc"):
        assert client.get(f"/images/{image_id}").status_code == 404, image_id
        assert client.get(f"/images/{image_id}/live").status_code == 200, image_id


#: An LQIP that would end a quoted CSS url(), the declaration, the attribute and the element.
HOSTILE_LQIP = "data:image/webp;base64,AA==') } </style><script>alert(1)</script> url(\"x\\"
#: What a style attribute may hold once the page has put a card's background in it.
SAFE_STYLE = re.compile(r"(aspect-ratio: \d+ / \d+;\s*)?(background-color: #[0-9a-fA-F]{6})?(; )?"
                        r"(background-image: url\([A-Za-z0-9/:;,=+\-._~%]*\))?;?")


def test_a_hostile_lqip_or_colour_stays_inside_its_css_value(client: TestClient, api_settings: Settings,
                                                             storage: MemoryStorage) -> None:
    made = client.post("/api/images/generate", json={"prompts": [{"prompt": "a lighthouse"}, {"prompt": "a cup"}]})
    first, second = made.json()["image_ids"]
    make_images(api_settings, storage)

    async def spoil() -> None:
        engine = create_async_engine(api_settings.database_url)
        async with engine.begin() as connection:
            await connection.execute(update(GeneratedImage).where(GeneratedImage.id == first).values(
                lqip=HOSTILE_LQIP, dominant_color="red; background: url(//elsewhere.example/x)"))
            await connection.execute(update(GeneratedImage).where(GeneratedImage.id == second).values(
                lqip=None, dominant_color="#0a0B0c"))
        await engine.dispose()

    asyncio.run(spoil())
    for path in ("/gallery", "/gallery/results", "/posts", "/posts/list", f"/images/{first}",
                 f"/images/{first}/live", f"/images/{second}"):
        page = client.get(path).text
        styles = [html.unescape(value) for value in re.findall(r'style="([^"]*background[^"]*)"', page)]
        assert styles, path
        for style in styles:
            assert SAFE_STYLE.fullmatch(style.strip()), (path, style)
        assert "<script>alert" not in page and "elsewhere.example" not in page, path
    assert "background-color: #0a0B0c" in client.get("/gallery").text  # a real colour is kept
