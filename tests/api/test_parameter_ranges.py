"""Numbers a client sends, in cursors, queries, paths and headers, are range-checked (issue 11).

A number the database cannot hold failed there: OverflowError on SQLite past 2**63, "out of
range" on PostgreSQL past 2**31 for an INTEGER column, each a 500 (or a broken event stream).
Ids are 1 to 2**31 - 1, the range of their columns; anything else is a 422 naming the problem,
or a 404 for a path id that names nothing. Both engines, since their limits differ.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.support import AUTH, on_both_engines

pytestmark = [on_both_engines, pytest.mark.timeout(120)]

LARGEST_ID = 2**31 - 1
HUGE = 2**64 + 1  # past both engines' integers
POST = "---\ntitle: Ranges\n---\n<!-- image: a ruler -->\n"


def cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.fixture
def client_with_a_post(client: TestClient) -> TestClient:
    assert client.post("/api/posts", json={"markdown": POST}, headers=AUTH).status_code == 201
    return client


CURSORS = {
    "id past 64 bits": f"2024-01-01T00:00:00|{HUGE}",
    "id of 2**63": f"2024-01-01T00:00:00|{2**63}",
    "id past the column": f"2024-01-01T00:00:00|{LARGEST_ID + 1}",
    "negative id": f"2024-01-01T00:00:00|-{HUGE}",
    "id 0": "2024-01-01T00:00:00|0",
    "id with an underscore": "2024-01-01T00:00:00|1_0",
    "time with an offset": "2024-01-01T00:00:00+05:00|5",
}


@pytest.mark.parametrize("path", ["/api/images/search", "/api/posts"])
@pytest.mark.parametrize("text", CURSORS.values(), ids=CURSORS.keys())
def test_a_cursor_holding_what_no_page_ends_at_is_a_422(client_with_a_post: TestClient, path: str, text: str) -> None:
    answer = client_with_a_post.get(path, params={"cursor": cursor(text)})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["message"].startswith("cursor is not one this API issued (")


@pytest.mark.parametrize("path", ["/api/images/search", "/api/posts"])
def test_cursors_the_api_issues_still_page_and_one_past_the_ids_does_not(client: TestClient, path: str) -> None:
    for number in range(3):
        markdown = f"---\ntitle: Post {number}\n---\n"
        # Queued, so that each post has an image row for the image search to page through.
        assert client.post("/api/posts", json={"markdown": markdown, "enqueue": True}, headers=AUTH).status_code == 201
    seen: list[int] = []
    page: dict[str, Any] = {"next_cursor": None}
    while True:
        params = {"limit": 1} | ({"cursor": page["next_cursor"]} if page["next_cursor"] else {})
        page = client.get(path, params=params).json()
        seen += [item["id"] for item in page["items"]]
        if not page["next_cursor"]:
            break
    assert len(seen) == 3 and len(set(seen)) == 3
    last = client.get(path, params={"cursor": cursor(f"2099-01-01T00:00:00|{LARGEST_ID}")})
    assert last.status_code == 200  # the largest id is still an id
    assert client.get(path, params={"cursor": cursor(f"2099-01-01T00:00:00|{2**63}")}).status_code == 422


@pytest.mark.parametrize(("parameters", "headers"), [
    ({"after": str(LARGEST_ID + 1)}, {}),  # PostgreSQL failed on it inside the stream, after a 200
    ({}, {"Last-Event-ID": str(LARGEST_ID + 1)}),
    ({}, {"Last-Event-ID": "18446744073709551617"}),  # 2**64 + 1: OverflowError inside the stream
    ({}, [(b"last-event-id", "\xb2".encode("latin-1"))]),  # "²": a digit to str.isdigit(), not to int()
], ids=["after past the column", "Last-Event-ID past the column",
        "Last-Event-ID past 64 bits", "Last-Event-ID of another digit"])
@pytest.mark.timeout(30)  # a stream that begins waits for events that never come
def test_an_event_id_that_is_none_is_a_422_before_the_stream_begins(
        client: TestClient, parameters: dict[str, str], headers: Any) -> None:
    answer = client.get("/api/events", params=parameters | {"limit": "1"}, headers=headers)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/json")


def test_every_number_a_route_takes_refuses_one_past_64_bits(client_with_a_post: TestClient) -> None:
    """Every integer parameter of every route in the OpenAPI document, every cursor, Last-Event-ID:
    a path id that names nothing is a 404, anything else a 422; never a 500."""
    schema = client_with_a_post.get("/openapi.json").json()
    tried = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                name, where = parameter["name"], parameter["in"]
                if not (_integer(parameter["schema"]) or name in {"cursor", "last-event-id"}):
                    continue
                for number in (HUGE, -HUGE):
                    url, params, headers = _with_ids(path), {}, dict(AUTH)
                    value = cursor(f"2024-01-01T00:00:00|{number}") if name == "cursor" else str(number)
                    if where == "path":
                        url = path.replace("{" + name + "}", value)
                    elif where == "query":
                        params[name] = value
                    else:
                        headers[name] = value
                    answer = client_with_a_post.request(method.upper(), url, params=params, headers=headers,
                                                        json={} if "requestBody" in operation else None)
                    tried.append((method, url, params, answer.status_code))
                    assert answer.status_code in {404, 422}, (method, url, params, headers, answer.text)
    assert len(tried) >= 20, tried  # the image, post, prompt and batch ids, cursors, event ids …
def _integer(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "integer" or any(_integer(option) for option in schema.get("anyOf", []))


def _with_ids(path: str) -> str:
    import re

    return re.sub(r"\{[^}]+\}", "1", path)
