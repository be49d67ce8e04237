"""The posts view at ``/posts``: each post, newest first, with its images in order and their total cost.

Pages by cursor like the API's ``GET /api/posts``; a page's images and costs come in two grouped
queries (db/post_images.py), whatever the number of posts on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from blogimg.api.deps import database, runtime
from blogimg.db.post_images import PostCost, PostImage, PostImagesReader
from blogimg.db.posts import PostSummary
from blogimg.errors import InputError
from blogimg.web.templating import latest_event_id, render, status_for

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 10
_LONGEST_CURSOR = 200


@dataclass(frozen=True, slots=True)
class PostThumbnail:
    image: PostImage
    thumbnail_url: str | None


@dataclass(frozen=True, slots=True)
class PostRow:
    """One post as the view shows it."""

    post: PostSummary
    images: list[PostThumbnail]
    cost: PostCost


async def post_rows(request: Request, cursor: str | None) -> tuple[list[PostRow], str | None, list[str]]:
    """One page of posts, the next page's cursor, and what was wrong with the cursor (if anything)."""
    opened = await database(request)
    try:
        page = await opened.posts.page(slug=None, cursor=cursor, limit=PAGE_SIZE)
    except InputError as error:
        return [], None, [str(error)]
    ids = [post.id for post in page.items]
    reader = PostImagesReader(opened.sessions)
    images, costs = await reader.images(ids), await reader.costs(ids)
    storage = (await runtime(request)).storage
    rows = [PostRow(post, [PostThumbnail(image, storage.url(image.thumbnail_key) if image.thumbnail_key else None)
                           for image in images.get(post.id, [])], costs.get(post.id, PostCost(0.0, 0)))
            for post in page.items]
    return rows, page.next_cursor, []


def _cursor(request: Request) -> tuple[str | None, list[str]]:
    cursor = (request.query_params.get("cursor") or "").strip() or None
    if cursor is not None and (len(cursor) > _LONGEST_CURSOR or "\x00" in cursor):
        return None, ["cursor is not one this page issued"]
    return cursor, []


def _context(cursor: str | None, rows: list[PostRow], next_cursor: str | None, problems: list[str]) -> dict[str, Any]:
    query = urlencode({"cursor": cursor}) if cursor else ""
    return {"rows": rows, "cursor": cursor, "next_cursor": next_cursor, "problems": problems,
            "results_url": "/posts/list" + (f"?{query}" if query else "")}


@router.get("/posts", response_class=HTMLResponse)
async def posts(request: Request, last_event_id: Annotated[int, Depends(latest_event_id)]) -> HTMLResponse:
    cursor, problems = _cursor(request)
    rows, next_cursor, more_problems = await post_rows(request, cursor)
    problems += more_problems
    context = {**_context(cursor, rows, next_cursor, problems), "last_event_id": last_event_id}
    return render(request, "posts.html", context, status_code=status_for(request, problems))


@router.get("/posts/list", response_class=HTMLResponse)
async def posts_list(request: Request) -> HTMLResponse:
    """The list region alone, fetched again by htmx on every change."""
    cursor, problems = _cursor(request)
    rows, next_cursor, more_problems = await post_rows(request, cursor)
    problems += more_problems
    return render(request, "partials/posts_list.html", _context(cursor, rows, next_cursor, problems),
                  status_code=status_for(request, problems))
