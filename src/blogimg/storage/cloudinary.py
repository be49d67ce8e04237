"""Cloudinary as a storage backend, through the official SDK (``pip install 'blogimg[cloudinary]'``).

Credentials come only from the SDK's own configuration: ``CLOUDINARY_URL=cloudinary://API_KEY:
API_SECRET@CLOUD_NAME`` (query parameters such as ``secure``, ``cname``, ``upload_prefix`` and
``private_cdn`` are the SDK's). They are read once, when the backend is built, and passed to
every SDK call, so nothing depends on the SDK's process-wide config afterwards. They are never
logged or put in a message.

**Raw resources.** blogimg stores AVIF, WebP, JPEG and PNG bytes it has already optimised; they
must come back byte for byte. An ``image`` resource is an input to Cloudinary's image pipeline:
the extension leaves the public id and becomes a ``format`` (``.jpeg`` comes back as ``jpg``, so
keys would not round-trip), delivery URLs may be re-encoded by account-wide defaults, and every
upload is analysed. A ``raw`` resource is a file: its public id keeps the extension, and it is
delivered unchanged, with a Content-Type from that extension (which is why ``content_type`` is not
sent). The price: no on-the-fly transformations (blogimg makes its own variants) and the plan's
raw file size limit (10 MB on the free plan).

**Public ids.** ``STORAGE_PREFIX`` is the folder; each key segment is encoded reversibly. The docs
(Permitted naming conventions) forbid ``?&#\\%<>+``, silently replace other special characters with
``_``, trim whitespace and slashes at the ends, and refuse ``v<digits>`` as a folder name (it reads
as a version). So ASCII letters and digits, ``.``, ``-`` and non-ASCII letters are kept, and every
other character, ``_`` itself, and a segment's leading ``v`` before a digit become ``_XX`` per UTF-8
byte (``white space`` → ``white_20space``); ``list`` decodes them back.

**Empty objects.** The SDK drops an empty file from the request and the service refuses one
("Empty file"), so a 0-byte object is stored as :data:`EMPTY_MARKER` tagged :data:`EMPTY_TAG`;
``get`` turns the marker back into ``b""`` and ``list`` reports size 0. Its URL serves the marker.

**API budget.** ``put`` and ``delete`` use the Upload API (not rate-limited); ``get`` and
``exists`` read the delivery URL (the CDN); ``url`` is built locally. Only ``list`` calls the Admin
API (500 calls an hour): one call per 500 objects.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import re
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from blogimg.errors import ConfigurationError, InvalidKeyError, StorageError
from blogimg.storage.base import StoredObject, import_sdk, storage_folder, validate_key

if TYPE_CHECKING:
    from blogimg.config import Settings

RESOURCE_TYPE = "raw"
DELIVERY_TYPE = "upload"
MAX_PUBLIC_ID_LENGTH = 255  #: Cloudinary's limit, folder included
#: What a 0-byte object is stored as (the service refuses empty files); never a real image.
EMPTY_MARKER = b"blogimg empty object: Cloudinary refuses 0-byte files, so this stands for one\n"
EMPTY_TAG = "blogimg_empty_object"
#: Seconds to connect, and to wait for each read, per request (SDK call or download). Without a
#: timeout the SDK waits forever; its urllib3 pool (urllib3's default Retry(3)) tries a failed
#: connect, or a GET whose answer was lost, at most 3 more times, and a POST whose answer was lost
#: (upload, destroy) never again: every call is bounded by a few of these waits.
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
_URL_SHAPE = "cloudinary://API_KEY:API_SECRET@CLOUD_NAME"
_ESCAPES = re.compile(r"(?:_[0-9A-F]{2})+")


def encode_public_id(key: str) -> str:
    """``key`` as a public id Cloudinary keeps as given (see the module's docstring)."""
    return "/".join(_encode_segment(segment) for segment in key.split("/"))


def decode_public_id(public_id: str) -> str | None:
    """The key ``public_id`` encodes, or None where it is not one of ours."""
    try:
        key = _ESCAPES.sub(lambda match: bytes.fromhex(match.group().replace("_", "")).decode(), public_id)
    except UnicodeDecodeError:
        return None
    return key if encode_public_id(key) == public_id else None


def _encode_segment(segment: str) -> str:
    kept = [character if _kept(character) and not (index == 0 and re.match("v[0-9]", segment))
            else "".join(f"_{byte:02X}" for byte in character.encode("utf-8", "surrogatepass"))
            for index, character in enumerate(segment)]
    return "".join(kept)


def _kept(character: str) -> bool:
    if character.isascii():
        return character.isalnum() or character in ".-"
    return character.isalpha()  # "any language character" is allowed; symbols and emoji are not


class CloudinaryStorage:
    """Raw resources under ``folder`` in the Cloudinary account of ``CLOUDINARY_URL``."""

    page_size = 500  #: resources per Admin API call, its maximum (tests lower it to see paging)
    connect_timeout = CONNECT_TIMEOUT  #: tests shorten these to see a silent service fail fast
    read_timeout = READ_TIMEOUT

    def __init__(self, folder: str = "") -> None:
        sdk = _import_sdk()
        self._uploader, self._admin, self._utils = sdk.uploader, sdk.api, sdk.utils
        self._http = import_sdk("httpx2", storage="cloudinary", extra="cloudinary")
        self._urllib3 = import_sdk("urllib3", storage="cloudinary", extra="cloudinary")  # the SDK's transport
        config = _read_config(sdk)
        self._secrets = [str(value) for value in (config.api_key, config.api_secret) if value]
        self.cloud_name: str = config.cloud_name
        # Every option the SDK would otherwise take from its process-wide config, given explicitly.
        self._api_options = {name: getattr(config, name) for name in (
            "cloud_name", "api_key", "api_secret", "oauth_token", "upload_prefix", "signature_algorithm")}
        version = str(config.signature_version)  # a string when it came in CLOUDINARY_URL's query
        self._api_options["signature_version"] = int(version) if version.isdigit() else 2
        self._url_options = {name: getattr(config, name) for name in (
            "cloud_name", "secure_distribution", "signature_algorithm", "api_secret")}
        self._url_options.update({name: _flag(getattr(config, name)) for name in (
            "private_cdn", "cdn_subdomain", "secure_cdn_subdomain", "shorten", "sign_url",
            "long_url_signature", "force_version", "use_root_path")})
        cname, secure = config.cname, _flag(config.secure)
        # https unless told otherwise; the SDK honours a cname only over http.
        self._url_options.update(cname=cname, secure=(not cname) if secure is None else secure)
        self.folder = _folder(folder)

    @classmethod
    def from_settings(cls, settings: Settings) -> CloudinaryStorage:
        return cls(settings.storage_prefix)

    def public_id(self, key: str) -> str:
        public_id = self.folder + encode_public_id(validate_key(key))
        if len(public_id) > MAX_PUBLIC_ID_LENGTH:
            raise InvalidKeyError(f"invalid storage key {key!r}: too long for Cloudinary (its public id "
                                  f"would have {len(public_id)} characters, at most {MAX_PUBLIC_ID_LENGTH})")
        return public_id

    async def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        public_id = self.public_id(key)
        if data == EMPTY_MARKER:
            raise StorageError(f"cannot store {key!r} in Cloudinary: its bytes are blogimg's marker for an empty file")
        payload, tags = (bytes(data), None) if data else (EMPTY_MARKER, EMPTY_TAG)
        result = await self._call("store", key, self._uploader.upload, payload, public_id=public_id,
                                  resource_type=RESOURCE_TYPE, type=DELIVERY_TYPE, overwrite=True,
                                  # invalidate: the CDN may hold a 404 or older bytes of this key
                                  invalidate=True, tags=tags, timeout=self._sdk_timeout(), **self._api_options)
        if result.get("public_id") != public_id:  # renamed by rules this encoding missed: unreachable by key
            raise StorageError(f"cannot store {key!r} in Cloudinary: it changed the public id "
                               f"{public_id!r} to {result.get('public_id')!r}")
        return StoredObject(key=key, size=len(data), url=self.url(key))

    async def get(self, key: str) -> bytes:
        response = await self._fetch("GET", key)
        if response.status_code == 404:
            raise StorageError(f"no stored file under key {key!r}")
        if response.status_code != 200:
            raise StorageError(f"Cloudinary could not read {key!r}: HTTP {response.status_code} from its delivery URL")
        body: bytes = response.content
        return b"" if body == EMPTY_MARKER else body

    async def exists(self, key: str) -> bool:
        response = await self._fetch("HEAD", key)
        if response.status_code in (200, 404):
            return bool(response.status_code == 200)
        raise StorageError(f"Cloudinary could not check {key!r}: HTTP {response.status_code} from its delivery URL")

    async def delete(self, key: str) -> None:
        result = await self._call("delete", key, self._uploader.destroy, self.public_id(key),
                                  resource_type=RESOURCE_TYPE, type=DELIVERY_TYPE, invalidate=True,
                                  timeout=self._sdk_timeout(), **self._api_options)
        if result.get("result") not in ("ok", "not found"):
            raise StorageError(f"Cloudinary could not delete {key!r}: it answered {result.get('result')!r}")

    def url(self, key: str) -> str:
        url, _ = self._utils.cloudinary_url(self.public_id(key), resource_type=RESOURCE_TYPE,
                                            type=DELIVERY_TYPE, **self._url_options)
        return str(url)

    async def list(self, prefix: str = "") -> AsyncIterator[StoredObject]:
        """Every key under ``prefix``, sorted (the Admin API pages by its own order).

        The server-side prefix stops at ``prefix``'s last slash: a segment's encoding can depend on
        what follows its first character, so a partial name is matched here instead.
        """
        directory = prefix[: prefix.rfind("/") + 1]
        server_prefix = self.folder + encode_public_id(directory)
        found: builtins.list[StoredObject] = []
        cursor: str | None = None
        while True:
            page = await self._call("list the keys under", prefix, self._admin.resources, resource_type=RESOURCE_TYPE,
                                    type=DELIVERY_TYPE, prefix=server_prefix or None, tags=True,
                                    max_results=self.page_size, next_cursor=cursor, timeout=self._sdk_timeout(),
                                    **self._api_options)
            found.extend(stored for resource in page.get("resources", [])
                         if (stored := self._stored(resource)) and stored.key.startswith(prefix))
            cursor = page.get("next_cursor")
            if not cursor:
                break
        for stored in sorted(found, key=lambda stored: stored.key):
            yield stored

    def _stored(self, resource: dict[str, Any]) -> StoredObject | None:
        public_id = str(resource.get("public_id", ""))
        if not public_id.startswith(self.folder):
            return None
        key = decode_public_id(public_id.removeprefix(self.folder))
        if key is None or not _is_key(key):  # uploaded by hand or by another tool: not one of ours
            return None
        size = int(resource.get("bytes") or 0)
        if size == len(EMPTY_MARKER) and EMPTY_TAG in (resource.get("tags") or ()):
            size = 0
        return StoredObject(key=key, size=size, url=self.url(key), modified=_timestamp(resource.get("created_at")))

    async def _call(self, operation: str, key: str, function: Callable[..., Any], *args: Any, **options: Any) -> Any:
        try:
            return await asyncio.to_thread(function, *args, **options)
        except Exception as error:  # the SDK raises its Error tree, bare Exception, ValueError, urllib3's
            raise StorageError(self._describe(operation, key, error)) from None

    async def _fetch(self, method: str, key: str) -> Any:
        url = self.url(key)
        try:
            timeout = self._http.Timeout(self.read_timeout, connect=self.connect_timeout)
            async with self._http.AsyncClient(timeout=timeout) as client:
                return await client.request(method, url)
        except self._http.HTTPError as error:
            operation = "read" if method == "GET" else "check"
            raise StorageError(self._describe(operation, key, error)) from None

    def _sdk_timeout(self) -> Any:
        """The SDK hands ``timeout`` to urllib3 as it is: connect and read bounded apart."""
        return self._urllib3.Timeout(connect=self.connect_timeout, read=self.read_timeout)

    def _describe(self, operation: str, key: str, error: BaseException) -> str:
        """One line naming the key and what failed; the account's key and secret blanked out."""
        detail = " ".join(str(error).split()) or type(error).__name__
        for secret in self._secrets:
            detail = detail.replace(secret, "***")
        if len(detail) > 300:
            detail = detail[:297] + "..."
        return f"Cloudinary could not {operation} {key!r}: {detail}"


def _import_sdk() -> Any:
    try:  # importing the SDK reads CLOUDINARY_URL, and raises ValueError on a malformed one
        sdk = import_sdk("cloudinary", storage="cloudinary", extra="cloudinary")
        for module in ("uploader", "api", "utils"):
            import_sdk(f"cloudinary.{module}", storage="cloudinary", extra="cloudinary")
    except ValueError:
        raise ConfigurationError(f"CLOUDINARY_URL must look like {_URL_SHAPE}") from None
    return sdk


def _read_config(sdk: Any) -> Any:
    """The SDK's configuration read afresh from the environment (by its own parser), checked."""
    if os.environ.get("CLOUDINARY_URL") and os.environ.get("CLOUDINARY_CLOUD_NAME"):
        raise ConfigurationError("both CLOUDINARY_URL and CLOUDINARY_CLOUD_NAME are set, and the Cloudinary "
                                 "SDK then ignores CLOUDINARY_URL: unset one of them")
    try:
        config = sdk.Config()
    except ValueError:  # a wrong scheme; said our way, since a message could echo the URL
        raise ConfigurationError(f"CLOUDINARY_URL must look like {_URL_SHAPE}") from None
    if not (config.cloud_name and (config.oauth_token or (config.api_key and config.api_secret))):
        raise ConfigurationError(f"storage 'cloudinary' needs CLOUDINARY_URL={_URL_SHAPE} "
                                 "(from the API Keys page of the Cloudinary console)")
    return config


def _flag(value: Any) -> Any:
    """Query values of CLOUDINARY_URL arrive as strings, so "false" would be true: read them as the
    SDK reads its CLOUDINARY_* variables."""
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def _is_key(key: str) -> bool:
    try:
        validate_key(key)
    except InvalidKeyError:
        return False
    return True


def _timestamp(created_at: object) -> float | None:
    try:
        return datetime.fromisoformat(str(created_at).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _folder(prefix: str) -> str:
    """The storage folder (storage/base.py's rule) as a Cloudinary folder of public ids."""
    folder = storage_folder(prefix)
    return encode_public_id(folder.rstrip("/")) + "/" if folder else ""
