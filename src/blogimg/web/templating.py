"""Rendering the status page's templates, with what every page needs in its context.

Every view calls :func:`render`; it adds the frame's globals: who is asking (``role``,
``can_change`` — a read-only viewer is shown no control that changes anything), the CSRF token
that htmx sends back on every request, whether sign-out applies, and the navigation. Pages pass
``last_event_id`` (:func:`latest_event_id`) so that ``static/live.js`` resumes the event stream
from the moment the page was made, and misses nothing that changed while it loaded.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from blogimg.api.auth import Role, csrf_token, keys_configured, request_role
from blogimg.api.deps import catalog
from blogimg.api.event_hub import GAP_GRACE_SECONDS
from blogimg.web.picture import css_url

TEMPLATE_DIRECTORY = Path(__file__).parent / "templates"
#: The frame's navigation: (path, label); a view is current when the request's path starts with it.
NAVIGATION = (("/", "Overview"), ("/gallery", "Gallery"), ("/failures", "Failures"), ("/posts", "Posts"),
              ("/webhooks", "Webhooks"))

templates = Jinja2Templates(directory=TEMPLATE_DIRECTORY)


def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    """The template ``name`` with ``context`` and the frame's globals, as an HTML response."""
    role = request_role(request)
    token = csrf_token(request)
    frame = {
        "role": role.value if role is not None else None,
        "can_change": role is Role.FULL,
        "read_only": role is Role.READ,
        "csrf_token": token or "",
        # Only a cookie sign-in has a token, and only a cookie sign-in can be signed out of.
        "signed_in": keys_configured(request) and token is not None,
        "navigation": [(path, label, _is_current(request.url.path, path)) for path, label in NAVIGATION],
        "last_event_id": "",
    }
    response: HTMLResponse = templates.TemplateResponse(request, name, {**frame, **context}, status_code=status_code)
    # Pages show private, changing data: never from a shared cache, never stale from history.
    response.headers["Cache-Control"] = "no-store"
    return response


async def latest_event_id(request: Request) -> int:
    """Where the page's live updates resume: the newest settled event id (event_hub.py), so a change
    that commits out of id order on PostgreSQL while the page is made is not missed; the few events
    of the last seconds may come again, and only refresh what already shows them."""
    settled, _ = await (await catalog(request)).settled_event_ids(GAP_GRACE_SECONDS)
    return settled


def status_for(request: Request, problems: list[str]) -> int:
    """422 for a query with problems — but 200 to htmx, which swaps no 4xx in: the page shows them."""
    return 422 if problems and request.headers.get("hx-request") != "true" else 200


def _is_current(path: str, item: str) -> bool:
    return path == "/" if item == "/" else path == item or path.startswith(item + "/")


# Filters: how numbers read on the page ----------------------------------------------------------

def money(value: float | None) -> str:
    """US dollars, with cents — or more digits for the fractions of a cent single images cost."""
    if value is None:
        return "unknown"
    if value == 0:
        return "$0.00"
    if abs(value) < 0.1:
        return f"${value:.4f}".rstrip("0").rstrip(".") if abs(value) >= 0.0001 else "<$0.0001"
    return f"${value:,.2f}"


def duration(seconds: float | None) -> str:
    """A wait in words: "under a minute", "about 4 min", "2 h 5 min"; "unknown" without one."""
    if seconds is None:
        return "unknown"
    if seconds < 60:
        return "under a minute"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def milliseconds(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value / 1000:.1f} s" if value >= 1000 else f"{value:.0f} ms"


def percent(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value * 100:.1f}%" if value < 1 else "100%"


def when(moment: datetime | date | None) -> str:
    """A time as UTC (the catalogue stores naive UTC)."""
    if moment is None:
        return "–"
    if isinstance(moment, datetime):
        aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        return aware.strftime("%Y-%m-%d %H:%M UTC")
    return moment.isoformat()


def count(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


# Filters: values that go into CSS (a style attribute), where HTML escaping alone is not enough --

_COLOR = re.compile(r"#[0-9a-fA-F]{6}")


def css_color(value: str | None) -> str:
    """A ``#rrggbb`` colour as it is, anything else as "" (left out): it goes into CSS unquoted."""
    return value if value and _COLOR.fullmatch(value) else ""


def css_background(image: Any) -> str:
    """The ``background-color``/``background-image`` declarations for something with ``lqip`` and
    ``dominant_color`` (a card, an image row): "" when it has neither that is safe to use."""
    declarations = []
    color = css_color(getattr(image, "dominant_color", None))
    if color:
        declarations.append(f"background-color: {color}")
    lqip = getattr(image, "lqip", None)
    if lqip:
        declarations.append(f"background-image: {css_url(lqip)}")
    return "; ".join(declarations)


templates.env.filters.update(money=money, duration=duration, milliseconds=milliseconds, percent=percent,
                             when=when, count=count, css_color=css_color, css_background=css_background)
