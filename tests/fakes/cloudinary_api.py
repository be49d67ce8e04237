"""A fake of Cloudinary's HTTP APIs, as documented, on loopback: what the official SDK calls.

- Upload API: ``POST /v1_1/<cloud>/<resource_type>/upload`` and ``.../destroy`` (multipart form,
  signed: the sorted ``name=value`` pairs but file, api_key, resource_type and cloud_name, joined
  by ``&``, plus the API secret, as SHA-1 or SHA-256 hex; a stale timestamp is refused). Public
  ids follow "Permitted naming conventions": ``?&#\\%<>+`` refused, other special characters
  replaced by ``_``, ends trimmed of whitespace and slashes, no ``v<digits>`` folder, at most
  255 characters. An empty file is refused ("Empty file"), as is none ("Missing required
  parameter - file").
- Admin API: ``GET /v1_1/<cloud>/resources/<resource_type>/upload?prefix=&max_results=&next_cursor=
  &tags=`` with Basic auth; pages of at most 500 sorted by public id when a prefix is given (else
  newest first), with rate-limit headers.
- Delivery: ``GET``/``HEAD /<cloud>/<resource_type>/upload[/v<version>]/<public_id>``, the stored
  bytes with a Content-Type from the extension, or 404 with ``X-Cld-Error``.

A cloud whose name starts with ``broken`` reads half of an upload and resets the connection.
Fixtures (imported by tests/contract/conftest.py): ``cloudinary_server`` (one per session),
``cloudinary_storage`` and ``broken_cloudinary_storage`` (a fresh cloud each, configured through
CLOUDINARY_URL as a user would).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import mimetypes
import re
import socket
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from blogimg.storage.base import Storage

API_KEY = "614335564976464"
API_SECRET = "fake-cloudinary-secret-Xq2LrT"
FORBIDDEN = set("?&#\\%<>+")
MAX_RESULTS = 500
_UPLOAD = re.compile(r"^/v1_1/([^/]+)/(image|raw|video)/(upload|destroy)$")
_ADMIN = re.compile(r"^/v1_1/([^/]+)/resources/(image|raw|video)(?:/upload)?$")
_DELIVERY = re.compile(r"^/([^/]+)/(image|raw|video)/upload/(?:v[0-9]+/)?(.+)$")
mimetypes.add_type("image/webp", ".webp")
mimetypes.add_type("image/avif", ".avif")


@dataclass
class Asset:
    data: bytes
    version: int
    created_at: str
    tags: list[str]
    asset_id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass(frozen=True)
class Call:
    api: str  #: "upload", "destroy", "admin" or "delivery"
    cloud: str
    fields: dict[str, str]


class _Error(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class FakeCloudinary:
    """The fake service; every asset in ``assets[(cloud, resource_type, public_id)]``."""

    def __init__(self) -> None:
        self.assets: dict[tuple[str, str, str], Asset] = {}
        self.calls: list[Call] = []
        self.lock = threading.Lock()
        self._clouds = itertools.count(1)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_port}"

    def new_cloud(self, kind: str = "blog") -> str:
        return f"{kind}-{next(self._clouds)}"

    def cloudinary_url(self, cloud: str, *, secret: str = API_SECRET) -> str:
        """CLOUDINARY_URL for ``cloud``: the API (upload_prefix) and the delivery URLs (cname) here."""
        return f"cloudinary://{API_KEY}:{secret}@{cloud}?upload_prefix=http://{self.host}&cname={self.host}"

    def count(self, api: str, cloud: str) -> int:
        with self.lock:
            return sum(1 for call in self.calls if call.api == api and call.cloud == cloud)

    def __enter__(self) -> FakeCloudinary:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # The Upload API.
    def upload(self, cloud: str, resource_type: str, fields: dict[str, str], file: bytes | None) -> dict[str, Any]:
        _check_signature(fields)
        if file is None:
            raise _Error(400, "Missing required parameter - file")
        if not file:
            raise _Error(400, "Empty file")
        public_id = _sanitized(fields.get("public_id") or uuid.uuid4().hex[:20])
        with self.lock:
            existing = self.assets.get((cloud, resource_type, public_id))
            if existing and fields.get("overwrite") in ("0", "false"):
                return self._described(cloud, resource_type, public_id, existing) | {"existing": True}
            asset = Asset(bytes(file), int(time.time()), datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                          [tag for tag in fields.get("tags", "").split(",") if tag])
            self.assets[(cloud, resource_type, public_id)] = asset
        return self._described(cloud, resource_type, public_id, asset) | {"existing": False}

    def destroy(self, cloud: str, resource_type: str, fields: dict[str, str]) -> dict[str, Any]:
        _check_signature(fields)
        with self.lock:
            gone = self.assets.pop((cloud, resource_type, fields.get("public_id", "")), None)
        return {"result": "ok" if gone else "not found"}

    # The Admin API.
    def resources(self, cloud: str, resource_type: str, query: dict[str, str]) -> dict[str, Any]:
        max_results = int(query.get("max_results", "10"))
        if not 1 <= max_results <= MAX_RESULTS:
            raise _Error(400, f"max_results should be between 1 and {MAX_RESULTS}")
        prefix = query.get("prefix", "")
        with self.lock:
            found = [(public_id, asset) for (c, r, public_id), asset in self.assets.items()
                     if c == cloud and r == resource_type and public_id.startswith(prefix)]
        if prefix:
            found.sort(key=lambda item: item[0])
        else:
            found.reverse()  # newest first, as without a prefix
        start = int(query.get("next_cursor") or "0", 16)
        page = found[start:start + max_results]
        described = [self._described(cloud, resource_type, public_id, asset) for public_id, asset in page]
        if query.get("tags") != "true":
            for resource in described:
                resource.pop("tags")
        answer: dict[str, Any] = {"resources": described}
        if start + max_results < len(found):
            answer["next_cursor"] = f"{start + max_results:032x}"
        return answer

    def delivered(self, cloud: str, resource_type: str, public_id: str) -> Asset | None:
        with self.lock:
            return self.assets.get((cloud, resource_type, public_id))

    def _described(self, cloud: str, resource_type: str, public_id: str, asset: Asset) -> dict[str, Any]:
        path = f"{cloud}/{resource_type}/upload/v{asset.version}/{public_id}"
        return {"asset_id": asset.asset_id, "public_id": public_id, "version": asset.version,
                "version_id": hashlib.md5(asset.data + str(asset.version).encode()).hexdigest(),
                "resource_type": resource_type, "type": "upload", "created_at": asset.created_at,
                "tags": list(asset.tags), "bytes": len(asset.data), "etag": hashlib.md5(asset.data).hexdigest(),
                "placeholder": False, "url": f"http://{self.host}/{path}", "secure_url": f"https://{self.host}/{path}",
                "folder": public_id.rpartition("/")[0], "access_mode": "public"}


def _check_signature(fields: dict[str, str]) -> None:
    if fields.get("api_key") != API_KEY:
        raise _Error(401, f"Unknown API key {fields.get('api_key')}")
    signed = {name: value for name, value in fields.items()
              if name not in {"file", "api_key", "signature", "resource_type", "cloud_name"} and value}
    to_sign = "&".join(sorted(f"{name}={value}".replace("&", "%26") for name, value in signed.items()))
    signature = fields.get("signature", "")
    algorithm = hashlib.sha256 if len(signature) == 64 else hashlib.sha1
    if signature != algorithm((to_sign + API_SECRET).encode()).hexdigest():
        raise _Error(401, f"Invalid Signature {signature}. String to sign - '{to_sign}'.")
    reported = int(fields.get("timestamp") or 0)
    if abs(time.time() - reported) > 3600:
        raise _Error(400, f"Stale request - reported time is {reported} which is out of range")


def _sanitized(public_id: str) -> str:
    if FORBIDDEN & set(public_id):
        raise _Error(400, f"Public ID {public_id} contains forbidden characters")
    replaced = "".join(character if character.isalpha() or character in "0123456789._-/" else "_"
                       for character in public_id)
    replaced = replaced.strip().strip("/")
    if any(re.fullmatch("v[0-9]+", folder) for folder in replaced.split("/")[:-1]):
        raise _Error(400, f"Public ID {public_id} has a folder named like a version")
    if not 1 <= len(replaced) <= 255:
        raise _Error(400, "Public ID must be between 1 and 255 characters")
    return replaced


def _multipart(content_type: str, body: bytes) -> tuple[dict[str, str], bytes | None]:
    """The form's fields, and the ``file`` part's bytes (None where there is no such part)."""
    boundary = re.search(r'boundary="?([^";]+)"?', content_type)
    if not boundary:
        raise _Error(400, "Invalid request body")
    fields: dict[str, str] = {}
    file = None
    for part in (b"\r\n" + body).split(b"\r\n--" + boundary.group(1).encode())[1:]:
        if part.startswith(b"--"):
            break
        head, _, content = part.partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]*)"', head)
        if not name:
            continue
        if name.group(1) == b"file":
            file = content
        else:
            fields[name.group(1).decode()] = content.decode("utf-8")
    return fields, file


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    @property
    def fake(self) -> FakeCloudinary:
        fake: FakeCloudinary = self.server.fake  # type: ignore[attr-defined]
        return fake

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        route = _UPLOAD.match(urlsplit(self.path).path)
        if route and route.group(1).startswith("broken"):
            self.rfile.read(length // 2)  # half the upload, then the connection dies
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        body = self.rfile.read(length)
        if not route:
            return self._json(404, {"error": {"message": "Resource not found"}})
        cloud, resource_type, action = route.groups()
        try:
            fields, file = _multipart(self.headers.get("Content-Type", ""), body)
            self._record(action, cloud, fields)
            if action == "upload":
                self._json(200, self.fake.upload(cloud, resource_type, fields, file))
            else:
                self._json(200, self.fake.destroy(cloud, resource_type, fields))
        except _Error as error:
            self._json(error.status, {"error": {"message": str(error)}})

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def _serve(self, *, head: bool) -> None:
        url = urlsplit(self.path)
        admin = _ADMIN.match(url.path)
        if admin and not head:
            query = {name: values[0] for name, values in parse_qs(url.query).items()}
            self._record("admin", admin.group(1), query)
            expected = "Basic " + base64.b64encode(f"{API_KEY}:{API_SECRET}".encode()).decode()
            if self.headers.get("Authorization") != expected:
                return self._json(401, {"error": {"message": "Invalid credentials"}})
            try:
                return self._json(200, self.fake.resources(admin.group(1), admin.group(2), query),
                                  {"X-FeatureRateLimit-Limit": "500", "X-FeatureRateLimit-Remaining": "499"})
            except _Error as error:
                return self._json(error.status, {"error": {"message": str(error)}})
        delivery = _DELIVERY.match(url.path)
        asset = None
        if delivery:
            cloud, resource_type, public_id = delivery.group(1), delivery.group(2), unquote(delivery.group(3))
            self._record("delivery", cloud, {"public_id": public_id})
            asset = self.fake.delivered(cloud, resource_type, public_id)
        if asset is None:
            return self._send(404, b"", {"Content-Type": "text/html", "X-Cld-Error": "Resource not found"}, head)
        content_type = mimetypes.guess_type(public_id)[0] or "application/octet-stream"
        self._send(200, asset.data, {"Content-Type": content_type, "ETag": f'"{hashlib.md5(asset.data).hexdigest()}"',
                                     "Cache-Control": "public, max-age=2592000"}, head)

    def _record(self, api: str, cloud: str, fields: dict[str, str]) -> None:
        with self.fake.lock:
            self.fake.calls.append(Call(api, cloud, dict(fields)))

    def _json(self, status: int, answer: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(answer).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _send(self, status: int, body: bytes, headers: dict[str, str], head: bool = False) -> None:
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture(scope="session")
def cloudinary_server() -> Iterator[FakeCloudinary]:
    with FakeCloudinary() as fake:
        yield fake


def _configured(fake: FakeCloudinary, cloud: str, monkeypatch: pytest.MonkeyPatch) -> Storage:
    from blogimg.config import Settings
    from blogimg.storage.cloudinary import CloudinaryStorage

    monkeypatch.delenv("CLOUDINARY_CLOUD_NAME", raising=False)  # else the SDK ignores CLOUDINARY_URL
    monkeypatch.setenv("CLOUDINARY_URL", fake.cloudinary_url(cloud))
    return CloudinaryStorage.from_settings(Settings(storage="cloudinary", storage_prefix="blog/"))


@pytest.fixture
def cloudinary_storage(cloudinary_server: FakeCloudinary, monkeypatch: pytest.MonkeyPatch) -> Storage:
    return _configured(cloudinary_server, cloudinary_server.new_cloud(), monkeypatch)


@pytest.fixture
def broken_cloudinary_storage(cloudinary_server: FakeCloudinary, monkeypatch: pytest.MonkeyPatch) -> Storage:
    return _configured(cloudinary_server, cloudinary_server.new_cloud("broken"), monkeypatch)
