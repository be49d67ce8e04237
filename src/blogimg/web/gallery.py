"""The gallery at ``/gallery``: every image newest first, filtered by what the URL's query says.

The filters are a plain GET form, so a filtered view is a link to share or reload; the results
come from the catalogue's keyset search (the one behind ``GET /api/images/search``), a page at a
time by cursor. Each card shows the image's LQIP (or dominant colour) at once and its thumbnail
lazily over it, and links to the image's page.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import date, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from starlette.datastructures import QueryParams

from blogimg.api.deps import api_state, catalog, runtime
from blogimg.db.catalog import LARGEST_ID, ImageWithVariants
from blogimg.domain import PromptKind, Status
from blogimg.errors import InputError
from blogimg.storage.base import Storage
from blogimg.web.day_range import day_bounds, read_days
from blogimg.web.templating import latest_event_id, render, status_for

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 24  #: a full last row at 2, 3, 4 or 6 columns
_LONGEST_TEXT = 200


@dataclass(frozen=True, slots=True)
class GalleryFilters:
    """What the gallery shows, as its URL's query says; every field is optional."""

    q: str | None = None
    status: Status | None = None
    provider: str | None = None
    post: int | None = None
    kind: PromptKind | None = None
    date_from: date | None = None  #: first UTC day shown
    date_to: date | None = None  #: last UTC day shown (inclusive)
    cursor: str | None = None

    @classmethod
    def parse(cls, params: QueryParams) -> tuple[GalleryFilters, list[str]]:
        """The filters in ``params`` and a message for each that could not be read (then ignored)."""
        values: dict[str, Any] = {}
        problems: list[str] = []

        def text(name: str) -> str | None:
            value = (params.get(name) or "").strip()
            if len(value) > _LONGEST_TEXT or "\x00" in value:
                problems.append(f"{name}: at most {_LONGEST_TEXT} characters of text")
                return None
            return value or None

        values["q"], values["provider"], values["cursor"] = text("q"), text("provider"), text("cursor")
        for name, kind in (("status", Status), ("kind", PromptKind)):
            raw = text(name)
            if raw is not None:
                try:
                    values[name] = kind(raw)
                except ValueError:
                    problems.append(f"{name}: one of {', '.join(member.value for member in kind)}")
        raw_post = text("post")
        if raw_post is not None:
            if raw_post.isascii() and raw_post.isdigit() and 1 <= int(raw_post) <= LARGEST_ID:
                values["post"] = int(raw_post)
            else:
                problems.append("post: a post's id, a whole number from 1")
        values.update(read_days(text, problems))
        return cls(**values), problems

    def query(self, **changes: Any) -> str:
        """This view's URL query (empty fields left out), with ``changes`` applied."""
        changed = replace(self, **changes)
        pairs = [(item.name, getattr(changed, item.name)) for item in fields(changed)]
        return urlencode([(name, str(value)) for name, value in pairs if value is not None])

    @property
    def narrowed(self) -> bool:
        return any(getattr(self, item.name) is not None for item in fields(self) if item.name != "cursor")


@dataclass(frozen=True, slots=True)
class ImageCard:
    """What a card in the gallery (or a post's row) shows of one image."""

    id: int
    status: Status
    thumbnail_url: str | None
    lqip: str | None
    dominant_color: str | None
    alt: str
    prompt: str
    provider: str | None
    kind: str
    cost_usd: float | None
    created_at: datetime
    error_code: str | None

    @classmethod
    def of(cls, item: ImageWithVariants, storage: Storage) -> ImageCard:
        image = item.image
        return cls(image.id, image.status, storage.url(image.thumbnail_key) if image.thumbnail_key else None,
                   image.lqip, image.dominant_color, image.alt_text or item.prompt, item.prompt, image.provider,
                   str(item.kind), image.cost_usd, image.created_at, image.error_code)


async def results(request: Request, filters: GalleryFilters) -> tuple[list[ImageCard], str | None, list[str]]:
    """One page of cards, the next page's cursor, and what was wrong with the query (if anything)."""
    created_from, created_to = day_bounds(filters.date_from, filters.date_to)
    try:
        page = await (await catalog(request)).search(
            text=filters.q, provider=filters.provider, status=filters.status, post_id=filters.post,
            kind=filters.kind, created_from=created_from, created_to=created_to, cursor=filters.cursor,
            limit=PAGE_SIZE)
    except InputError as error:  # a cursor this server never issued: say so, show nothing
        return [], None, [str(error)]
    storage = (await runtime(request)).storage
    return [ImageCard.of(item, storage) for item in page.items], page.next_cursor, []


def _context(request: Request, filters: GalleryFilters, cards: list[ImageCard], next_cursor: str | None,
             problems: list[str]) -> dict[str, Any]:
    return {
        "filters": filters, "cards": cards, "next_cursor": next_cursor, "problems": problems,
        "statuses": list(Status), "kinds": list(PromptKind),
        "providers": sorted(api_state(request).provider_names | ({filters.provider} if filters.provider else set())),
        "results_url": "/gallery/results?" + filters.query(),
    }


@router.get("/gallery", response_class=HTMLResponse)
async def gallery(request: Request, last_event_id: Annotated[int, Depends(latest_event_id)]) -> HTMLResponse:
    filters, problems = GalleryFilters.parse(request.query_params)
    cards, next_cursor, search_problems = await results(request, filters)
    problems += search_problems
    context = {**_context(request, filters, cards, next_cursor, problems), "last_event_id": last_event_id}
    return render(request, "gallery.html", context, status_code=status_for(request, problems))


@router.get("/gallery/results", response_class=HTMLResponse)
async def gallery_results(request: Request) -> HTMLResponse:
    """The results region alone, fetched again by htmx on every change."""
    filters, problems = GalleryFilters.parse(request.query_params)
    cards, next_cursor, search_problems = await results(request, filters)
    problems += search_problems
    return render(request, "partials/gallery_results.html",
                  _context(request, filters, cards, next_cursor, problems), status_code=status_for(request, problems))
