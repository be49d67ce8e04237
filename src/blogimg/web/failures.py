"""The failures view at ``/failures``: failed images grouped by error code, with what providers said.

Filters (text, provider, post, kind, dates, error code) live in the URL, as the gallery's do; the
groups come from ``db/failed_images.py`` (the query behind ``GET /api/images/failures``). Each
group lists its newest images with a retry button, and the whole filter can be retried at once
("retry all N matching", after a confirmation) through ``POST /api/images/retry``. The results
region is fetched again whenever live.js reports a change, so retried images leave it live.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import date, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from starlette.datastructures import QueryParams

from blogimg.api.deps import api_state, database
from blogimg.api.routes.failures import RETRY_LIMIT
from blogimg.db.catalog import LARGEST_ID
from blogimg.db.failed_images import FailureFilter
from blogimg.domain import PromptKind
from blogimg.web.day_range import day_bounds, read_days
from blogimg.web.templating import latest_event_id, render, status_for

router = APIRouter(include_in_schema=False)
_LONGEST_TEXT = 200
_LONGEST_CODE = 32


@dataclass(frozen=True, slots=True)
class FailureFilters:
    """What the failures view shows, as its URL's query says; every field is optional."""

    q: str | None = None
    provider: str | None = None
    post: int | None = None
    kind: PromptKind | None = None
    code: str | None = None
    date_from: date | None = None  #: first UTC day shown
    date_to: date | None = None  #: last UTC day shown (inclusive)

    @classmethod
    def parse(cls, params: QueryParams) -> tuple[FailureFilters, list[str]]:
        """The filters in ``params`` and a message for each that could not be read (then ignored)."""
        values: dict[str, Any] = {}
        problems: list[str] = []

        def text(name: str, longest: int = _LONGEST_TEXT) -> str | None:
            value = (params.get(name) or "").strip()
            if len(value) > longest or "\x00" in value:
                problems.append(f"{name}: at most {longest} characters of text")
                return None
            return value or None

        values["q"], values["provider"], values["code"] = text("q"), text("provider"), text("code", _LONGEST_CODE)
        raw_kind = text("kind")
        if raw_kind is not None:
            try:
                values["kind"] = PromptKind(raw_kind)
            except ValueError:
                problems.append(f"kind: one of {', '.join(member.value for member in PromptKind)}")
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
        return any(getattr(self, item.name) is not None for item in fields(self))

    def created_range(self) -> tuple[datetime | None, datetime | None]:
        """The dates as the catalogue's naive UTC bounds: from the first day's start to after the last day."""
        return day_bounds(self.date_from, self.date_to)

    def for_database(self) -> FailureFilter:
        created_from, created_to = self.created_range()
        return FailureFilter(text=self.q, provider=self.provider, post_id=self.post, kind=self.kind,
                             error_code=self.code, created_from=created_from, created_to=created_to)

    def retry_body(self) -> dict[str, Any]:
        """The same filter as ``POST /api/images/retry`` takes it."""
        created_from, created_to = self.created_range()
        body = {"q": self.q, "provider": self.provider, "post_id": self.post,
                "kind": self.kind.value if self.kind else None, "error_code": self.code,
                "created_from": created_from.isoformat() + "Z" if created_from else None,
                "created_to": created_to.isoformat() + "Z" if created_to else None}
        return {name: value for name, value in body.items() if value is not None}


async def _context(request: Request, filters: FailureFilters, problems: list[str]) -> dict[str, Any]:
    report = await (await database(request)).failed_images.report(filters.for_database())
    return {
        "filters": filters, "problems": problems, "report": report, "retry_limit": RETRY_LIMIT,
        "retry_body": filters.retry_body(), "kinds": list(PromptKind),
        "providers": sorted(api_state(request).provider_names | ({filters.provider} if filters.provider else set())),
        "results_url": "/failures/results?" + filters.query(),
    }


@router.get("/failures", response_class=HTMLResponse)
async def failures_page(request: Request, last_event_id: Annotated[int, Depends(latest_event_id)]) -> HTMLResponse:
    filters, problems = FailureFilters.parse(request.query_params)
    context = {**await _context(request, filters, problems), "last_event_id": last_event_id}
    return render(request, "failures.html", context, status_code=status_for(request, problems))


@router.get("/failures/results", response_class=HTMLResponse)
async def failures_results(request: Request) -> HTMLResponse:
    """The groups alone, fetched again by htmx on every change."""
    filters, problems = FailureFilters.parse(request.query_params)
    return render(request, "partials/failures_results.html", await _context(request, filters, problems),
                  status_code=status_for(request, problems))
