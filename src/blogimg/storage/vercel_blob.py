"""Files in a Vercel Blob store, through the official Vercel SDK for Python (``vercel.blob``).

A key is stored under the pathname ``STORAGE_PREFIX + key``, public, without a random suffix (the
key is already unique: content addressed) and with ``allow_overwrite``: a second put of the same
key (a job run again after a crash) writes the same bytes and must succeed, where the API would
otherwise answer 400 "This blob already exists". Objects are cached for a year, as the bytes
under a key never change. Puts above ``MULTIPART_THRESHOLD`` go up in parts (the SDK's multipart
upload), so no single request carries a whole large original.

Credentials come only from ``BLOB_READ_WRITE_TOKEN`` (``vercel_blob_rw_<store>_<secret>``),
handed to the SDK by an explicit credential factory: the SDK then never looks for a Vercel OIDC
token (its default does, and may ask another host for one). The token is never logged and never
put in a message. The API base is ``VERCEL_BLOB_API_URL`` when set, else Vercel's.

Where blobs are served. The SDK reads a blob by pathname from
``https://<store>.public.blob.vercel-storage.com``, a host it builds from the store id and cannot
be told otherwise, and its download, head and delete refuse URLs of any other host. The API
itself is the authority: every put, head and list answer names the blob's ``url``. So:

- ``get`` asks the API for the blob (head by pathname, which every API base accepts) and
  downloads the ``url`` the answer names, with httpx2, only if that URL is on the origin the store
  serves from (Vercel's delivery host of the store, or the origin of a non-Vercel API base): a
  wrong or hostile answer cannot make blogimg fetch from another host;
- ``url(key)`` needs no call: it is Vercel's delivery host for the store, built from the store id
  as the SDK builds it. Where the API base is not Vercel's (a compatible server, or the loopback
  fake of the tests), that host means nothing, and the delivery base is the one the API's answers
  name: learned from the first put, head or list answer and kept (before any answer, ``url``
  gives Vercel's host). ``public_base_url`` fixes the base outright, and a CDN in front is
  ``CDN_BASE_URL``, applied by the factory.

Network: nothing but the API base and the delivery URLs it names. ``vercel.blob`` imports no
telemetry (other modules of the ``vercel`` package do: ``vercel.internal.telemetry`` posts events
to a Vercel host at exit unless ``VERCEL_TELEMETRY_DISABLED=1``); that variable is set here, if
unset, before the SDK is imported, so a later SDK that adds telemetry to Blob stays quiet too.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from blogimg.errors import ConfigurationError, StorageError
from blogimg.storage.base import (
    StoredObject,
    import_sdk,
    is_valid_key,
    join_url,
    storage_folder,
    validate_key,
)

if TYPE_CHECKING:
    from blogimg.config import Settings

DEFAULT_API_URL = "https://vercel.com/api/blob"  #: the SDK's own default
TOKEN_PREFIX = "vercel_blob_rw_"
CACHE_MAX_AGE = 365 * 24 * 60 * 60  #: a year: the bytes under a key never change
MULTIPART_THRESHOLD = 16 * 1024 * 1024
PART_SIZE = 8 * 1024 * 1024  #: the API's parts are at least 5 MiB, but for the last
PAGE_SIZE = 1000  #: the most the list API gives per page
_Result = TypeVar("_Result")


class VercelBlobStorage:
    """A Storage on one Vercel Blob store; every method is one SDK session of its own."""

    def __init__(self, token: str, *, api_url: str = DEFAULT_API_URL, prefix: str = "",
                 public_base_url: str | None = None, timeout: float = 60.0) -> None:
        os.environ.setdefault("VERCEL_TELEMETRY_DISABLED", "1")  # see the module docstring
        self._blob = import_sdk("vercel.blob", storage="vercel-blob", extra="vercel")
        self._vercel_api: ModuleType = import_sdk("vercel.api", storage="vercel-blob", extra="vercel")
        self._vercel_errors: ModuleType = import_sdk("vercel.errors", storage="vercel-blob", extra="vercel")
        import httpx2  # a dependency of the SDK, so present once the SDK is

        self._httpx = httpx2
        self.store_id = store_of(token)
        self._token = token
        self.api_url = api_url.rstrip("/")
        self.prefix = storage_folder(prefix)
        self.timeout = timeout
        self._public_base_url = public_base_url
        # Vercel's own API serves from the host the store id names; any other names its own in answers.
        self._learns_base = public_base_url is None and self.api_url != DEFAULT_API_URL
        self._learned_base: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> VercelBlobStorage:
        token = os.environ.get("BLOB_READ_WRITE_TOKEN", "").strip()
        if not token:
            raise ConfigurationError("storage 'vercel-blob' needs BLOB_READ_WRITE_TOKEN "
                                     "(the store's read-write token, vercel_blob_rw_...)")
        api_url = os.environ.get("VERCEL_BLOB_API_URL", "").strip() or DEFAULT_API_URL
        return cls(token, api_url=api_url, prefix=settings.storage_prefix)

    def __repr__(self) -> str:  # never the token
        return f"VercelBlobStorage(store={self.store_id!r}, api_url={self.api_url!r}, prefix={self.prefix!r})"

    async def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        pathname = self.prefix + validate_key(key)
        options: dict[str, Any] = {"access": "public", "content_type": content_type,
                                   "add_random_suffix": False, "allow_overwrite": True,
                                   "cache_control_max_age": CACHE_MAX_AGE}

        async def upload() -> Any:
            if len(data) <= MULTIPART_THRESHOLD:
                return await self._blob.put_blob(pathname, data, **options)
            view = memoryview(data)
            async with self._blob.multipart_upload_blob(pathname, **options) as parts:
                for start in range(0, len(data), PART_SIZE):
                    await parts.upload_part(view[start:start + PART_SIZE])
            return parts.result

        result = await self._call("store", key, upload)
        if result.pathname != pathname:  # a store that adds random suffixes would break the key
            raise StorageError(f"Vercel Blob: cannot store {key!r}: the store saved it as "
                               f"{result.pathname!r} (random suffixes must be off)")
        self._learn(result.url, pathname)
        return StoredObject(key=key, size=len(data), url=self.url(key))

    async def get(self, key: str) -> bytes:
        pathname = self.prefix + validate_key(key)
        head = await self._head(key, pathname)
        if head is None:
            raise StorageError(f"no stored file under key {key!r}")
        if _origin(head.url) != self._expected_origin():  # never fetch wherever an answer points
            raise StorageError(f"Vercel Blob: cannot read {key!r}: the API named a download URL on "
                               f"{_origin(head.url)[:100]!r}, not the store's {self._expected_origin()!r}")
        try:
            async with self._httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.get(head.url)
        except self._httpx.HTTPError as error:
            raise self._failure("read", key, error) from None
        if response.status_code == 404:  # deleted between the head and the download
            raise StorageError(f"no stored file under key {key!r}")
        if response.status_code != 200 or len(response.content) != head.size:
            raise StorageError(f"Vercel Blob: cannot read {key!r}: the download answered HTTP "
                               f"{response.status_code} with {len(response.content)} of {head.size} bytes")
        return response.content

    async def exists(self, key: str) -> bool:
        return await self._head(key, self.prefix + validate_key(key)) is not None

    async def delete(self, key: str) -> None:
        pathname = self.prefix + validate_key(key)

        async def remove() -> None:
            try:
                await self._blob.delete_blob(pathname)
            except self._blob.BlobNotFoundError:
                pass  # deleting what is not there is not an error

        await self._call("delete", key, remove)

    def url(self, key: str) -> str:
        return join_url(self._delivery_base(), self.prefix + validate_key(key))

    async def list(self, prefix: str = "") -> AsyncIterator[StoredObject]:
        async def collect() -> builtins.list[Any]:
            return [item async for item in
                    self._blob.query_blobs(prefix=self.prefix + prefix, page_size=PAGE_SIZE)]

        found = await self._call("list", f"{prefix}*", collect)
        objects = []
        for item in found:
            key = item.pathname[len(self.prefix):]
            if not item.pathname.startswith(self.prefix) or not is_valid_key(key):
                continue  # a stray answer, or a name put there by something else: no method could use it
            self._learn(item.url, item.pathname)
            objects.append(StoredObject(key=key, size=item.size,
                                        url=join_url(self._delivery_base(), item.pathname),
                                        modified=item.uploaded_at.timestamp()))
        for stored in sorted(objects, key=lambda stored: stored.key):
            yield stored

    async def _head(self, key: str, pathname: str) -> Any:
        """The API's metadata of ``pathname``, or None if there is no such blob."""
        async def head() -> Any:
            try:
                return await self._blob.head_blob(pathname)
            except self._blob.BlobNotFoundError:
                return None

        found = await self._call("read", key, head)
        if found is not None:
            self._learn(found.url, pathname)
        return found

    async def _call(self, operation: str, key: str, call: Callable[[], Awaitable[_Result]]) -> _Result:
        """``call()`` inside an SDK session of this store; any SDK or HTTP error is one StorageError."""
        try:
            async with self._session():
                return await call()
        except (self._blob.BlobError, self._vercel_errors.VercelError, self._httpx.HTTPError,
                OSError, ValueError, TypeError) as error:  # ValueError: the SDK's argument checks
            raise self._failure(operation, key, error) from None

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[None]:
        # A session per call: its own options (not the process's default session, which reads the
        # environment once and keeps it), and an HTTP client on the running event loop.
        options = self._blob.BlobServiceOptions(base_url=self.api_url, credentials_factory=self._credentials)
        async with self._vercel_api.session(service_options=[options], httpx_client_factory=self._client):
            yield

    def _credentials(self) -> Any:
        return self._blob.BlobCredentials(self._token, self.store_id)

    def _client(self) -> Any:
        return self._httpx.AsyncClient(timeout=self.timeout)

    def _failure(self, operation: str, key: str, error: BaseException) -> StorageError:
        reason = str(error).removeprefix("Vercel Blob: ")
        cause = error.__cause__ or error.__context__
        if isinstance(error, self._blob.BlobUnknownError) and cause is not None:
            reason = f"{type(cause).__name__}: {cause}"  # the transport's own words, not "Unknown error"
        reason = " ".join(reason.replace(self._token, "***").split())[:300] or type(error).__name__
        return StorageError(f"Vercel Blob: cannot {operation} {key!r}: {reason}")

    def _delivery_base(self) -> str:
        if self._public_base_url is not None:
            return self._public_base_url
        if self._learned_base is not None:
            return self._learned_base
        return f"https://{self.store_id.lower()}.public.blob.vercel-storage.com/"

    def _expected_origin(self) -> str:
        """Where this store's blobs may be downloaded from: Vercel's delivery host of the store for
        Vercel's API, else the API base's own origin (a compatible server, the loopback fake)."""
        if self.api_url == DEFAULT_API_URL:
            return f"https://{self.store_id.lower()}.public.blob.vercel-storage.com"
        return _origin(self.api_url)

    def _learn(self, url: str, pathname: str) -> None:
        """Keep the delivery base an answer's ``url`` names, where the API names its own (on the
        expected origin only: a wrong answer must not steer URLs elsewhere)."""
        if not self._learns_base or _origin(url) != self._expected_origin():
            return
        parts = urlsplit(url)
        path = unquote(parts.path)
        if parts.scheme in ("http", "https") and path.endswith("/" + pathname):
            base_path = quote(path[: len(path) - len(pathname)], safe="/")
            self._learned_base = urlunsplit((parts.scheme, parts.netloc, base_path, "", ""))


def store_of(token: str) -> str:
    """The store id in a read-write token; one ConfigurationError (without the token) if malformed."""
    store, separator, secret = token.removeprefix(TOKEN_PREFIX).partition("_")
    if not token.startswith(TOKEN_PREFIX) or not separator or not (store.isascii() and store.isalnum()) or not secret.strip("_"):
        raise ConfigurationError("BLOB_READ_WRITE_TOKEN is not a Vercel Blob read-write token "
                                 "(expected vercel_blob_rw_<store>_<secret>)")
    return store


def _origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, lower-cased (any user part kept, so it never matches)."""
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"
