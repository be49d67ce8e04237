"""``/sign-in`` and ``/sign-out``: the page asks for a key once and keeps a session cookie.

The mechanics — the session in the catalogue, the cookie's flags, CSRF — are api/auth.py's; this
module is the form around them. Wrong keys are counted per client address: past
:data:`MOST_FAILURES` within :data:`FAILURE_WINDOW_SECONDS` the form answers 429 until the oldest
failure has aged out, so a key cannot be guessed by trying fast.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from blogimg.api.auth import (
    end_session,
    keys_configured,
    own_origin,
    safe_next,
    sign_in_path,
    start_session,
)
from blogimg.web.templating import render

router = APIRouter(include_in_schema=False)

MOST_FAILURES = 10
FAILURE_WINDOW_SECONDS = 600.0
#: Addresses remembered at once; the longest-quiet is forgotten first, so a flood of addresses
#: cannot grow memory without bound.
REMEMBERED_CLIENTS = 10_000
#: A key is a line of text: a body larger than this is not a sign-in form.
LARGEST_FORM_BYTES = 8192


class FailedSignIns:
    """Recent wrong keys per client address, in this process."""

    def __init__(self, most: int = MOST_FAILURES, window: float = FAILURE_WINDOW_SECONDS) -> None:
        self.most, self.window = most, window
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def wait_seconds(self, client: str) -> float:
        """How long ``client`` must wait before it may try again; 0 when it may try now."""
        failures = self._recent(client)
        return failures[0] + self.window - time.monotonic() if len(failures) >= self.most else 0.0

    def failed(self, client: str) -> None:
        self._recent(client).append(time.monotonic())
        while len(self._failures) > REMEMBERED_CLIENTS:
            self._failures.popitem(last=False)

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)

    def _recent(self, client: str) -> deque[float]:
        failures = self._failures.setdefault(client, deque())
        self._failures.move_to_end(client)
        while failures and failures[0] <= time.monotonic() - self.window:
            failures.popleft()
        return failures


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_form(request: Request,
                       next_path: Annotated[str | None, Query(alias="next")] = None) -> Response:
    """The form; with no keys configured there is nothing to sign in to, so on to ``next``."""
    if not keys_configured(request):
        return RedirectResponse(safe_next(next_path), status_code=303)
    return _form(request, safe_next(next_path))


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in(request: Request) -> Response:
    """Check the key; a session cookie and a 303 to ``next``, or the form again with one message."""
    fields = await _form_fields(request)
    destination = safe_next(fields.get("next"))
    if not keys_configured(request):
        return RedirectResponse(destination, status_code=303)
    origin = request.headers.get("origin")
    if origin is not None and origin.lower() != own_origin(request):
        # Another site posting a key of its own would sign this browser in as that key.
        return _form(request, destination, "This sign-in came from another site and was refused.", 403)
    client = request.client.host if request.client else "unknown"
    attempts = _failed_sign_ins(request)
    wait = attempts.wait_seconds(client)
    if wait > 0:
        minutes = max(1, math.ceil(wait / 60))
        return _form(request, destination, f"Too many wrong keys from your address. Try again in {minutes} "
                                           f"minute{'s' if minutes != 1 else ''}.", 429,
                     {"Retry-After": str(math.ceil(wait))})
    response = RedirectResponse(destination, status_code=303)
    if await start_session(request, response, fields.get("key", "").strip()) is None:
        attempts.failed(client)
        return _form(request, destination, "That key is not valid here. Check it and try again.", 401)
    attempts.succeeded(client)
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    """End the session everywhere and clear the cookie; then the sign-in form."""
    response = RedirectResponse(sign_in_path(request), status_code=303)
    await end_session(request, response)
    return response


def _form(request: Request, destination: str, message: str | None = None, status_code: int = 200,
          headers: dict[str, str] | None = None) -> HTMLResponse:
    response = render(request, "sign_in.html", {"next": destination, "message": message,
                                                 "action": sign_in_path(request)}, status_code)
    response.headers.update(headers or {})
    return response


async def _form_fields(request: Request) -> dict[str, str]:
    """The urlencoded form's fields (the first of each name); anything else reads as empty."""
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return {}
    body = await request.body()
    if len(body) > LARGEST_FORM_BYTES:
        return {}
    try:
        pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=20)
    except ValueError:  # more fields than a sign-in form has
        return {}
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields


def _failed_sign_ins(request: Request) -> FailedSignIns:
    # One counter per app (not per module), so two apps in one process count apart.
    attempts: FailedSignIns | None = getattr(request.app.state, "failed_sign_ins", None)
    if attempts is None:
        attempts = request.app.state.failed_sign_ins = FailedSignIns()
    return attempts
