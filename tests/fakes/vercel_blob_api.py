"""A fake of the Vercel Blob HTTP API, as documented and as the official SDK calls it, on loopback.

The API (at ``api_url``, which ``VERCEL_BLOB_API_URL`` points the SDK at):

- ``PUT ?pathname=…`` (or the older ``PUT /<pathname>``) stores the body; headers
  ``x-api-version``, ``x-vercel-blob-access``, ``x-content-type``, ``x-add-random-suffix``,
  ``x-allow-overwrite`` and ``x-cache-control-max-age``. A pathname that exists is refused (400
  "This blob already exists") unless ``x-allow-overwrite: 1``;
- ``GET ?url=<url or pathname>`` is head; ``GET ?prefix=&limit=&cursor=`` lists by pathname, in
  pages of ``{blobs, cursor, hasMore}``; ``POST /delete`` ``{"urls": [...]}`` deletes;
- ``POST /mpu`` with ``x-mpu-action: create | upload | complete`` is a multipart upload.

Every call needs ``Authorization: Bearer vercel_blob_rw_<store>_<secret>`` of a store this fake
made (``new_store``); errors are the API's ``{"error": {"code", "message"}}``. Blobs are served,
with their Content-Type, at loopback delivery URLs (``/delivery/<store>/<pathname>``) that the
answers name, as the real API names ``https://<store>.public.blob.vercel-storage.com/…``.

A store whose ``delivery_origin`` is set names delivery URLs on that origin instead, as a wrong or
hostile API would. A store made with ``broken=True`` cuts every upload off: the fake reads half the body, then resets
the connection, as a crashed load balancer would.
"""

from __future__ import annotations

import base64
import hashlib
import json
import mimetypes
import secrets
import socket
import struct
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest

from blogimg.config import Settings
from blogimg.storage import Storage, build_storage

CONTRACT_PREFIX = "blog/"  #: the contract runs under a STORAGE_PREFIX, so stripping it is tested too
DEFAULT_CACHE_MAX_AGE = 30 * 24 * 60 * 60  #: a month, the API's default
API_PATH = "/api/blob"
DELIVERY_PATH = "/delivery/"


@dataclass
class Blob:
    data: bytes
    content_type: str
    cache_control: str
    uploaded_at: datetime
    etag: str


@dataclass
class Store:
    store_id: str
    secret: str
    broken: bool = False
    #: Where answers say the blobs are (scheme://host:port), instead of this fake: a wrong or hostile API.
    delivery_origin: str | None = None
    blobs: dict[str, Blob] = field(default_factory=dict)
    uploads: dict[str, dict[int, bytes]] = field(default_factory=dict)  #: multipart: id -> parts

    @property
    def token(self) -> str:
        return f"vercel_blob_rw_{self.store_id}_{self.secret}"


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]


class FakeVercelBlob:
    """Serves the API and the delivery URLs on 127.0.0.1 in a background thread."""

    def __init__(self, *, max_page_size: int = 1000) -> None:
        self.max_page_size = max_page_size  #: the real API's cap is 1000; smaller makes pages
        self.stores: dict[str, Store] = {}
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def api_url(self) -> str:
        return self.url + API_PATH

    def new_store(self, *, broken: bool = False) -> Store:
        store = Store(secrets.token_hex(8), secrets.token_urlsafe(24).replace("_", "x"), broken)
        with self._lock:
            self.stores[store.store_id] = store
        return store

    def delivery_url(self, store: Store, pathname: str) -> str:
        return f"{store.delivery_origin or self.url}{DELIVERY_PATH}{store.store_id}/{quote(pathname, safe='/')}"

    def __enter__(self) -> FakeVercelBlob:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # The API, one method per documented call; each returns (status, JSON body).

    def authorised(self, headers: dict[str, str]) -> Store:
        token = headers.get("authorization", "").removeprefix("Bearer ")
        store_id, _, secret = token.removeprefix("vercel_blob_rw_").partition("_")
        store = self.stores.get(store_id)
        if store is None or not token.startswith("vercel_blob_rw_") or not secrets.compare_digest(
                store.secret, secret):
            raise ApiError(403, "forbidden", "Access denied, please provide a valid token for this resource.")
        if "x-api-version" not in headers:
            raise ApiError(400, "bad_request", "Missing x-api-version header.")
        return store

    def put(self, store: Store, pathname: str, data: bytes, headers: dict[str, str]) -> dict[str, Any]:
        pathname = _checked(pathname)
        if headers.get("x-add-random-suffix") == "1":
            stem, dot, extension = pathname.rpartition(".")
            suffix = secrets.token_urlsafe(21).replace("_", "x").replace("-", "x")
            pathname = f"{stem}-{suffix}{dot}{extension}" if dot else f"{pathname}-{suffix}"
        if pathname in store.blobs and headers.get("x-allow-overwrite") != "1":
            raise ApiError(400, "bad_request", "This blob already exists, use `allowOverwrite: true` if you "
                                               "want to overwrite it. Or `addRandomSuffix: true` to generate "
                                               "a unique filename.")
        content_type = (headers.get("x-content-type") or mimetypes.guess_type(pathname)[0]
                        or "application/octet-stream")
        max_age = int(headers.get("x-cache-control-max-age") or DEFAULT_CACHE_MAX_AGE)
        blob = Blob(data, content_type, f"public, max-age={max_age}", datetime.now(UTC),
                    f'"{hashlib.md5(data).hexdigest()}"')
        store.blobs[pathname] = blob
        return {**self._urls(store, pathname), "pathname": pathname, "contentType": content_type,
                "contentDisposition": _disposition(pathname), "etag": blob.etag}

    def head(self, store: Store, url_or_pathname: str) -> dict[str, Any]:
        pathname = url_or_pathname
        if "://" in url_or_pathname:
            path = unquote(urlsplit(url_or_pathname).path)
            pathname = path.removeprefix(f"{DELIVERY_PATH}{store.store_id}/").lstrip("/")
        blob = store.blobs.get(pathname)
        if blob is None:
            raise ApiError(404, "not_found", "The requested blob does not exist")
        return {**self._listed(store, pathname, blob), "contentType": blob.content_type,
                "contentDisposition": _disposition(pathname), "cacheControl": blob.cache_control}

    def list_blobs(self, store: Store, query: dict[str, str]) -> dict[str, Any]:
        limit = min(int(query.get("limit") or 1000), self.max_page_size)
        after = base64.urlsafe_b64decode(query["cursor"]).decode() if query.get("cursor") else None
        names = sorted(name for name in store.blobs
                       if name.startswith(query.get("prefix", "")) and (after is None or name > after))
        page, more = names[:limit], len(names) > limit
        answer: dict[str, Any] = {"blobs": [self._listed(store, name, store.blobs[name]) for name in page],
                                  "hasMore": more}
        if more:
            answer["cursor"] = base64.urlsafe_b64encode(page[-1].encode()).decode()
        return answer

    def delete(self, store: Store, urls: list[str]) -> dict[str, Any]:
        for target in urls:
            try:
                pathname = self.head(store, target)["pathname"]
            except ApiError:
                continue  # deleting what is not there is not an error
            store.blobs.pop(pathname, None)
        return {}

    def multipart(self, store: Store, pathname: str, data: bytes, headers: dict[str, str]) -> Any:
        action = headers.get("x-mpu-action")
        if action == "create":
            if _checked(pathname) in store.blobs and headers.get("x-allow-overwrite") != "1":
                raise ApiError(400, "bad_request", "This blob already exists")
            upload_id = uuid.uuid4().hex
            store.uploads[upload_id] = {}
            return {"key": pathname, "uploadId": upload_id}
        parts = store.uploads.get(headers.get("x-mpu-upload-id", ""))
        if parts is None or unquote(headers.get("x-mpu-key", "")) != pathname:
            raise ApiError(400, "bad_request", "Unknown multipart upload")
        if action == "upload":
            number = int(headers["x-mpu-part-number"])
            parts[number] = data
            return {"etag": f'"{hashlib.md5(data).hexdigest()}"'}
        if action == "complete":
            listed = json.loads(data)
            if [part["etag"] for part in listed] != [f'"{hashlib.md5(parts[part["partNumber"]]).hexdigest()}"'
                                                    for part in listed]:
                raise ApiError(400, "bad_request", "Multipart parts do not match")
            store.uploads.pop(headers["x-mpu-upload-id"])
            return self.put(store, pathname, b"".join(parts[part["partNumber"]] for part in listed), headers)
        raise ApiError(400, "bad_request", f"Unknown x-mpu-action {action!r}")

    def _urls(self, store: Store, pathname: str) -> dict[str, str]:
        url = self.delivery_url(store, pathname)
        return {"url": url, "downloadUrl": url + "?download=1"}

    def _listed(self, store: Store, pathname: str, blob: Blob) -> dict[str, Any]:
        return {**self._urls(store, pathname), "pathname": pathname, "size": len(blob.data),
                "uploadedAt": blob.uploaded_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "etag": blob.etag}


def _checked(pathname: str) -> str:
    pathname = pathname.removeprefix("/")
    if not pathname or "//" in pathname or any(part in (".", "..") for part in pathname.split("/")):
        raise ApiError(400, "bad_request", "Invalid pathname")
    if len(pathname) > 950:
        raise ApiError(400, "bad_request", "pathname is too long, maximum length is 950")
    return pathname


def _disposition(pathname: str) -> str:
    return f"inline; filename=\"{quote(pathname.rpartition('/')[2])}\""


def _handler(fake: FakeVercelBlob) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            headers = {name.lower(): value for name, value in self.headers.items()}
            with fake._lock:
                fake.requests.append(Seen(self.command, self.path, headers))
            parts = urlsplit(self.path)
            query = {name: values[0] for name, values in parse_qs(parts.query, keep_blank_values=True).items()}
            if self.command in ("GET", "HEAD") and parts.path.startswith(DELIVERY_PATH):
                return self._deliver(unquote(parts.path.removeprefix(DELIVERY_PATH)))
            if not parts.path.startswith(API_PATH):
                return self._answer(404, {"error": {"code": "not_found", "message": "Not found"}})
            route = parts.path.removeprefix(API_PATH)
            try:
                store = fake.authorised(headers)
            except ApiError as error:
                self._body(cut_off=False)  # read, so the connection stays in step for the next request
                return self._answer(error.status, {"error": {"code": error.code, "message": error.message}})
            try:
                uploading = self.command == "PUT" or headers.get("x-mpu-action") == "upload"
                data = self._body(cut_off=uploading and store.broken)
                if data is None:
                    return None  # the connection is gone
                with fake._lock:
                    answer = self._route(store, route, query, data, headers)
            except ApiError as error:
                return self._answer(error.status, {"error": {"code": error.code, "message": error.message}})
            return self._answer(200, answer)

        def _route(self, store: Store, route: str, query: dict[str, str], data: bytes,
                   headers: dict[str, str]) -> Any:
            if self.command == "PUT" and route in ("", "/") and "fromUrl" not in query:
                return fake.put(store, query.get("pathname", ""), data, headers)
            if self.command == "PUT" and route.startswith("/") and len(route) > 1:
                return fake.put(store, unquote(route[1:]), data, headers)
            if self.command == "GET" and route in ("", "/"):
                return fake.head(store, query["url"]) if "url" in query else fake.list_blobs(store, query)
            if self.command == "POST" and route == "/delete":
                return fake.delete(store, json.loads(data)["urls"])
            if self.command == "POST" and route == "/mpu":
                return fake.multipart(store, query.get("pathname", ""), data, headers)
            raise ApiError(404, "not_found", f"Unknown route {self.command} {route or '/'}")

        def _body(self, *, cut_off: bool) -> bytes | None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(chunks)
            length = int(self.headers.get("Content-Length") or 0)
            if cut_off:  # half the body, then a reset (SO_LINGER 0: close() sends RST)
                self.rfile.read(length // 2)
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                return None
            return self.rfile.read(length) if length else b""

        def _deliver(self, path: str) -> None:
            store_id, _, pathname = path.partition("/")
            with fake._lock:
                store = fake.stores.get(store_id)
                blob = store.blobs.get(pathname) if store else None
            if blob is None:
                return self._send(404, b"The page could not be found\n\nNOT_FOUND\n", {"Content-Type": "text/plain"})
            return self._send(200, blob.data, {
                "Content-Type": blob.content_type, "Cache-Control": blob.cache_control, "ETag": blob.etag,
                "Last-Modified": format_datetime(blob.uploaded_at, usegmt=True),
                "Content-Disposition": _disposition(pathname)})

        def _answer(self, status: int, body: Any) -> None:
            self._send(status, json.dumps(body).encode(), {"Content-Type": "application/json"})

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            try:
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up; nothing to tell it

        do_GET = do_PUT = do_POST = do_HEAD = _serve

        def log_message(self, format: str, *args: object) -> None:
            return None

    return Handler


# Fixtures (imported by tests/contract/conftest.py and by the unit tests).


@pytest.fixture(scope="session")
def vercel_blob_api() -> Iterator[FakeVercelBlob]:
    # Pages of 2, so every listing of more than two blobs follows a cursor.
    with FakeVercelBlob(max_page_size=2) as fake:
        yield fake


def store_settings(monkeypatch: pytest.MonkeyPatch, fake: FakeVercelBlob, store: Store) -> Settings:
    """Settings for ``store``, with the SDK's variables set for this test (monkeypatch restores them)."""
    monkeypatch.setenv("BLOB_READ_WRITE_TOKEN", store.token)
    monkeypatch.setenv("VERCEL_BLOB_API_URL", fake.api_url)
    return Settings(storage="vercel-blob", storage_prefix=CONTRACT_PREFIX)


@pytest.fixture
def vercel_blob_storage(vercel_blob_api: FakeVercelBlob, monkeypatch: pytest.MonkeyPatch) -> Storage:
    """A fresh store for this test, built by the factory from the environment."""
    return build_storage(store_settings(monkeypatch, vercel_blob_api, vercel_blob_api.new_store()))


@pytest.fixture
def broken_vercel_blob_storage(vercel_blob_api: FakeVercelBlob, monkeypatch: pytest.MonkeyPatch) -> Storage:
    """A fresh store whose uploads the fake cuts off half-way (the SDK makes no retries of its own)."""
    store = vercel_blob_api.new_store(broken=True)
    return build_storage(store_settings(monkeypatch, vercel_blob_api, store))
