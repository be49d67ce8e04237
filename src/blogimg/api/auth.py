"""Who is asking and what they may do: bearer keys, the page's session cookie, and CSRF.

With no key configured everything is open and everyone is :attr:`Role.FULL`. With any key
(``BLOGIMG_API_KEYS`` full, ``BLOGIMG_API_READ_KEYS`` read-only) every route needs one —
``Authorization: Bearer <key>`` or the ``blogimg_session`` cookie that signing in gives
(web/sign_in.py) — except :data:`OPEN_PATHS` and what is mounted rather than routed (stored files,
the page's static assets, the docs' assets, ``/openapi.json``). :func:`authenticate` is a
dependency of the whole app, so a new route cannot forget it.

A read-only key changes nothing: every method but GET, HEAD and OPTIONS answers 403. A browser
sends the cookie by itself, even on a form another site made it post, so a request that is
authenticated by the cookie and changes something must also carry the session's CSRF token and,
when the browser says where it comes from (``Origin``), come from this server. A bearer key is
never sent by itself, so bearer requests need neither.

The cookie holds a random token; the catalogue keeps only its hash (db/sessions.py). The CSRF
token is an HMAC of the session token: the page can be given it, the server can recompute it
from the cookie, and a page on another site can learn neither.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, urlsplit

from fastapi import FastAPI, Request
from starlette.responses import Response

from blogimg.api.deps import api_state, database
from blogimg.api.errors import ApiError
from blogimg.api.keys import KeyRing, Role

__all__ = ["OPEN_PATHS", "SESSION_COOKIE", "Principal", "Role", "authenticate", "csrf_token",
           "document_security", "end_session", "keys_configured", "request_role", "safe_next", "sign_in_path",
           "start_session", "still_allowed"]

SESSION_COOKIE = "blogimg_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
#: Routes anyone may call: health checks, signing in and out, and the API's documentation
#: (which holds no data). Mounted files and assets are open by not being routes at all.
OPEN_PATHS = frozenset({"/healthz", "/sign-in", "/sign-out", "/docs"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Longer than any token we issue (43 characters), short enough that junk costs nothing to refuse.
_LONGEST_TOKEN = 128


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request comes from: everyone (keys off), a bearer key, or a signed-in page."""

    role: Role
    via: Literal["open", "bearer", "session"]
    csrf_token: str | None = None  #: only for a session: what its page must send back


_EVERYONE = Principal(Role.FULL, "open")


async def authenticate(request: Request) -> None:
    """The app's dependency: 401 without a valid key or session, 403 for a read-only key that
    would change something, 403 ``csrf`` for a cookie request without its CSRF token."""
    keys = _keys(request)
    if not keys.configured:
        request.state.principal = _EVERYONE
        return
    if _route_path(request) in OPEN_PATHS:
        return
    principal = await _identify(request, keys)
    request.state.principal = principal
    if principal is None:
        raise _unauthenticated(request)
    if request.method in SAFE_METHODS:
        return
    if principal.via == "session":
        await check_csrf(request, principal)
    if principal.role is not Role.FULL:
        raise ApiError(403, "forbidden", "this key is read-only: it can see everything and change nothing")


def request_role(request: Request) -> Role | None:
    """The role the request acts with: FULL when no keys are configured, None when not signed in."""
    principal = _principal(request)
    if principal is not None:
        return principal.role
    return None if keys_configured(request) else Role.FULL


def csrf_token(request: Request) -> str | None:
    """The CSRF token a page embeds (``<meta name="csrf-token">``); None unless signed in by cookie."""
    principal = _principal(request)
    return principal.csrf_token if principal is not None else None


def keys_configured(request: Request) -> bool:
    """Whether the app needs a key at all (then the page offers sign-in and sign-out)."""
    return _keys(request).configured


async def check_csrf(request: Request, principal: Principal) -> None:
    """403 ``csrf`` unless the request comes from this server's origin with the session's token."""
    origin = request.headers.get("origin")
    if origin is not None and origin.lower() != own_origin(request):
        raise ApiError(403, "csrf", "refused a cross-site request: its Origin is not this server")
    offered = request.headers.get(CSRF_HEADER) or await _form_field(request, CSRF_FIELD)
    expected = principal.csrf_token or ""
    if not offered or not hmac.compare_digest(offered.encode(), expected.encode()):
        raise ApiError(403, "csrf", f"a signed-in page must send its CSRF token ({CSRF_HEADER} header or "
                                    f"{CSRF_FIELD} form field) with every change")


def own_origin(request: Request) -> str:
    """This server as the browser sees it, ``scheme://host[:port]`` (the Host header, lower case)."""
    return f"{request.url.scheme}://{request.url.netloc}".lower()


async def start_session(request: Request, response: Response, key: str) -> Role | None:
    """Sign in with ``key``: store a new session and set its cookie on ``response``; None for a wrong key."""
    identity = _keys(request).identify(key) if key else None
    if identity is None:
        return None
    token = secrets.token_urlsafe(32)
    lifetime = timedelta(hours=api_state(request).settings.session_hours)
    previous = _cookie_token(request)
    if previous is not None:
        # The browser's old session ends with this sign-in: its cookie is replaced, and the token,
        # if anyone kept a copy, must not stay good for the rest of its lifetime.
        await (await database(request)).web_sessions.revoke(_token_hash(previous))
    await (await database(request)).web_sessions.open(
        _token_hash(token), role=identity.role.value, key_fingerprint=identity.fingerprint, lifetime=lifetime)
    response.set_cookie(SESSION_COOKIE, token, max_age=int(lifetime.total_seconds()), path="/",
                        secure=request.url.scheme == "https", httponly=True, samesite="strict")
    return identity.role


async def end_session(request: Request, response: Response) -> None:
    """Sign out: revoke the cookie's session in the catalogue (every process) and clear the cookie.

    A session still alive must prove the request is its page's own (CSRF), so another site
    cannot sign a person out; a cookie whose session has ended is simply cleared.
    """
    token = _cookie_token(request)
    if token is not None:
        principal = await _session_principal(request, _keys(request), token)
        if principal is not None:
            await check_csrf(request, principal)
        await (await database(request)).web_sessions.revoke(_token_hash(token))
    response.delete_cookie(SESSION_COOKIE, path="/", secure=request.url.scheme == "https", httponly=True,
                           samesite="strict")


async def still_allowed(request: Request) -> bool:
    """Whether the request's key or session would still be let in now (a long stream asks again:
    sign-out, an expired session or a removed key must end it, not only the next request)."""
    keys = _keys(request)
    return not keys.configured or await _identify(request, keys) is not None


def sign_in_path(request: Request) -> str:
    """``/sign-in`` as the browser must ask for it: behind a proxy's prefix (root_path), under it."""
    return f"{str(request.scope.get('root_path', '')).rstrip('/')}/sign-in"


def safe_next(value: str | None) -> str:
    """``value`` when it is a path on this server, else ``/``: signing in never sends anyone elsewhere."""
    if not value or len(value) > 2000 or not value.startswith("/") or value.startswith("//"):
        return "/"
    if any(character == "\\" or ord(character) < 0x20 or ord(character) == 0x7F for character in value):
        return "/"  # browsers read "/\evil.test" as "//evil.test", and drop tabs and newlines
    return value


def document_security(app: FastAPI) -> None:
    """Declare the bearer key and the session cookie in /openapi.json for every route but the open ones,
    with their 401 (and, where a change is made, 403) answers; /docs then offers "Authorize"."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()
        components = schema.setdefault("components", {})
        if "securitySchemes" in components:
            return schema  # done on the first call; the schema is cached
        components["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "A full or read-only API key"},
            "session": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE,
                        "description": "The page's sign-in (POST /sign-in); changes need X-CSRF-Token"},
        }
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        for path, item in schema.get("paths", {}).items():
            if path in OPEN_PATHS:
                continue
            for method, operation in item.items():
                operation["security"] = [{"bearer": []}, {"session": []}]
                answers = operation.setdefault("responses", {})
                answers.setdefault("401", {"description": "No valid API key or session", "content": error})
                if method.upper() not in SAFE_METHODS:
                    answers.setdefault("403", {"description": "A read-only key, or a cross-site request",
                                               "content": error})
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _keys(request: Request) -> KeyRing:
    return api_state(request).keys


def _route_path(request: Request) -> str:
    # The path as the app routes it: behind a proxy that strips a prefix, without root_path.
    path, root = str(request.scope.get("path", "")), str(request.scope.get("root_path", ""))
    return path[len(root):] if root and path.startswith(root) else path


def _principal(request: Request) -> Principal | None:
    principal: Principal | None = getattr(request.state, "principal", None)
    return principal


async def _identify(request: Request, keys: KeyRing) -> Principal | None:
    # An Authorization header is an explicit choice: a wrong key is refused, never replaced by the cookie.
    authorization = request.headers.get("authorization")
    if authorization is not None:
        scheme, _, key = authorization.partition(" ")
        identity = keys.identify(key.strip()) if scheme.lower() == "bearer" and key.strip() else None
        return Principal(identity.role, "bearer") if identity is not None else None
    token = _cookie_token(request)
    return await _session_principal(request, keys, token) if token is not None else None


async def _session_principal(request: Request, keys: KeyRing, token: str) -> Principal | None:
    stored = await (await database(request)).web_sessions.find(_token_hash(token))
    if stored is None:
        return None
    # The key that signed in must still be configured, in the same role: removing a key (or
    # moving it to the other list) ends its sessions in every process at once.
    role = keys.role_of(stored.key_fingerprint)
    if role is None or role.value != stored.role:
        return None
    return Principal(role, "session", _csrf_for(token))


def _cookie_token(request: Request) -> str | None:
    token = request.cookies.get(SESSION_COOKIE)
    return token if token and len(token) <= _LONGEST_TOKEN and token.isascii() else None


def _token_hash(token: str) -> str:
    # The token is 256 random bits: nothing to guess, so a fast hash is enough.
    return hashlib.sha256(token.encode()).hexdigest()


def _csrf_for(token: str) -> str:
    mac = hmac.new(token.encode(), b"blogimg csrf", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


async def _form_field(request: Request, name: str) -> str | None:
    """A field of a plain HTML form post (urlencoded); other bodies carry the token in the header."""
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type not in {"application/x-www-form-urlencoded", "multipart/form-data"}:
        return None
    try:
        body = await request.body()
    except RuntimeError:  # a route with Form fields has parsed the body already: read its copy
        value = (await request.form()).get(name)
        return value if isinstance(value, str) else None
    if content_type != "application/x-www-form-urlencoded":
        return None
    try:
        fields = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=1000)
    except ValueError:  # more fields than any form of ours: no token to find
        return None
    return next((value for key, value in fields if key == name), None)


def _unauthenticated(request: Request) -> ApiError:
    """401 for the API; a person opening a page is sent to sign in, and back afterwards."""
    root = str(request.scope.get("root_path", "")).rstrip("/")
    sign_in = sign_in_path(request)
    if request.headers.get("hx-request"):
        # htmx swaps no 401 into the page, but follows HX-Redirect: a session that ended mid-use
        # takes the person to sign in rather than leave the page silently stale.
        current = urlsplit(request.headers.get("hx-current-url", ""))
        back = safe_next(current.path + (f"?{current.query}" if current.query else ""))
        return ApiError(401, "unauthorized", "sign in again", {"HX-Redirect": f"{sign_in}?next={quote(back)}"})
    path = request.url.path
    if (request.method in {"GET", "HEAD"} and "text/html" in request.headers.get("accept", "")
            and not path.startswith(f"{root}/api/") and path != f"{root}/metrics"):
        here = safe_next(path + (f"?{request.url.query}" if request.url.query else ""))
        return ApiError(303, "sign_in", "sign in first", {"Location": f"{sign_in}?next={quote(here)}"})
    return ApiError(401, "unauthorized", "a valid API key is required: Authorization: Bearer <key> "
                                         "(or sign in at /sign-in)", {"WWW-Authenticate": "Bearer"})
