"""Amazon S3 and any S3-compatible store (MinIO, Cloudflare R2, Backblaze B2), through obstore.

Credentials are obstore's business: it reads ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN`` (or a role, a container or the instance) itself, and blogimg never copies
them anywhere. blogimg reads only what it needs to build public URLs and to decide whether plain
http is acceptable: the endpoint, the region and the addressing style, from the same variables
obstore reads, and hands its reading back to obstore explicitly so that both agree.

Keys are stored under ``STORAGE_PREFIX`` in ``STORAGE_BUCKET``; every object is immutable
(content-addressed keys), so it is served with a year-long ``Cache-Control``.
"""

from __future__ import annotations

import builtins
import ipaddress
import os
import re
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

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
    from obstore.store import ClientConfig, RetryConfig, S3Store

    from blogimg.config import Settings

CACHE_CONTROL = "public, max-age=31536000, immutable"
#: Bodies larger than this go up in parts of this size: one part's failure is retried alone, and
#: no single request has to carry a whole 20 MB original.
MULTIPART_CHUNK_BYTES = 8 * 1024 * 1024
#: Parts sent at once; a worker already uploads several files concurrently.
MULTIPART_CONCURRENCY = 4
#: A request (a part, at most MULTIPART_CHUNK_BYTES) that has not finished in this long has failed;
#: obstore's own default (30 s) is short for 8 MiB on a slow uplink, and blogimg says it explicitly.
REQUEST_TIMEOUT = timedelta(seconds=60)
CONNECT_TIMEOUT = timedelta(seconds=10)
#: At most 3 retries, none started later than 30 s after the first try: a store that is down fails
#: the job within about a minute and a half, not obstore's default of 10 retries over 3 minutes.
BOUNDED_RETRY: RetryConfig = {"max_retries": 3, "retry_timeout": timedelta(seconds=30)}
DEFAULT_REGION = "us-east-1"
#: The variables obstore reads for the endpoint, in the order it prefers them.
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT")
#: Values that must never appear in a message, even if an error from the SDK quotes one.
SECRET_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
SECRET_CONFIG_KEYS = ("access_key_id", "secret_access_key", "session_token")
#: What S3, MinIO, R2 and B2 accept, loosely: it must not be able to change a URL's shape.
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$")
_REGION = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_XML_ERROR = re.compile(r"<Code>([^<]*)</Code>(?:.*?<Message>([^<]*)</Message>)?", re.DOTALL)
_LONGEST_REASON = 300


class S3Storage:
    """Files in an S3 bucket under a key prefix; URLs are public ones or presigned GETs."""

    def __init__(self, bucket: str, *, prefix: str = "", endpoint: str | None = None,
                 region: str = DEFAULT_REGION, virtual_hosted: bool = False, url_expiry: int | None = None,
                 config: Mapping[str, str] | None = None, retry: RetryConfig | None = None,
                 request_timeout: timedelta = REQUEST_TIMEOUT, connect_timeout: timedelta = CONNECT_TIMEOUT) -> None:
        """``config``: further obstore S3Config values (tests pass credentials here rather than
        in the environment); whatever is not given, obstore reads from the environment.
        ``retry``: obstore's RetryConfig, BOUNDED_RETRY when not given (never obstore's default of
        10 retries within 3 minutes); ``request_timeout`` bounds each request, a part of a
        multipart upload included, and ``connect_timeout`` its connecting."""
        self.bucket = checked_bucket(bucket)
        self.prefix = storage_folder(prefix)
        self.endpoint = checked_endpoint(endpoint) if endpoint else None
        if not _REGION.match(region):
            raise ConfigurationError(f"the S3 region {region!r} (AWS_REGION) is not a region name, e.g. eu-west-1")
        self.region = region
        self.virtual_hosted = virtual_hosted
        self.url_expiry = timedelta(seconds=url_expiry) if url_expiry else None
        self.bucket_url = bucket_url(self.bucket, self.endpoint, region, virtual_hosted)
        self._sdk: ModuleType = import_sdk("obstore", storage="s3", extra="s3")
        explicit: dict[str, Any] = {"region": region, "virtual_hosted_style_request": virtual_hosted, **(config or {})}
        if self.endpoint:
            # Both names: obstore prefers AWS_ENDPOINT_URL_S3 from the environment over ``endpoint``.
            explicit.update(endpoint=self.endpoint, aws_endpoint_url_s3=self.endpoint)
        self._secrets = tuple(str(explicit[name]) for name in SECRET_CONFIG_KEYS if explicit.get(name))
        # Always said explicitly, so that AWS_ALLOW_HTTP in the environment cannot widen it.
        client_options: ClientConfig = {"allow_http": bool(self.endpoint and self.endpoint.startswith("http://")),
                          "timeout": request_timeout, "connect_timeout": connect_timeout}
        try:
            self._store: S3Store = self._sdk.store.S3Store(
                self.bucket, config=explicit, client_options=client_options,
                retry_config=BOUNDED_RETRY if retry is None else retry)
        except Exception as error:  # the SDK's own check of a setting (an unknown region format...)
            raise ConfigurationError(f"storage 's3' cannot be set up: {self._reason(error)}") from None

    @classmethod
    def from_settings(cls, settings: Settings, *, environ: Mapping[str, str] | None = None) -> S3Storage:
        """The bucket and prefix from ``settings``; endpoint, region and addressing style from
        the standard AWS variables in ``environ`` (the process environment by default)."""
        environ = os.environ if environ is None else environ
        if not settings.storage_bucket:
            raise ConfigurationError("storage 's3' needs a bucket: set BLOGIMG_STORAGE_BUCKET")
        endpoint = next((environ[name] for name in ENDPOINT_VARIABLES if environ.get(name)), None)
        region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
        return cls(settings.storage_bucket, prefix=settings.storage_prefix, endpoint=endpoint, region=region,
                   virtual_hosted=_truthy(environ.get("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "")),
                   url_expiry=settings.storage_url_expiry)

    async def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        path = self._path(key)
        attributes = {"Content-Type": content_type, "Cache-Control": CACHE_CONTROL}
        try:
            await self._sdk.put_async(self._store, path, data, attributes=attributes,
                                      chunk_size=MULTIPART_CHUNK_BYTES, max_concurrency=MULTIPART_CONCURRENCY)
        except Exception as error:
            raise self._failure("upload", key, error) from None
        return StoredObject(key=key, size=len(data), url=self.url(key))

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            result = await self._sdk.get_async(self._store, path)
            return bytes(await result.bytes_async())
        except FileNotFoundError as error:
            if _bucket_missing(error):
                raise self._failure("download", key, error) from None
            raise StorageError(f"no stored file under key {key!r}") from None
        except Exception as error:
            raise self._failure("download", key, error) from None

    async def exists(self, key: str) -> bool:
        path = self._path(key)
        try:
            await self._sdk.head_async(self._store, path)
        except FileNotFoundError:
            return False
        except Exception as error:
            raise self._failure("check", key, error) from None
        return True

    async def delete(self, key: str) -> None:
        """S3 answers a delete of a missing key with success, so a repeat is harmless."""
        path = self._path(key)
        try:
            await self._sdk.delete_async(self._store, path)
        except FileNotFoundError as error:
            if _bucket_missing(error):
                raise self._failure("delete", key, error) from None
        except Exception as error:
            raise self._failure("delete", key, error) from None

    def url(self, key: str) -> str:
        """The public URL, or, with ``url_expiry``, a GET signed for that long (signed here,
        without a request, from the credentials obstore holds)."""
        validate_key(key)
        if self.url_expiry is None:
            return join_url(self.bucket_url, self.prefix + key)  # the prefix percent-encoded too
        try:
            signed: str = self._sdk.sign(self._store, "GET", self.prefix + key, self.url_expiry)
        except Exception as error:
            raise self._failure("sign a URL for", key, error) from None
        return signed

    async def list(self, prefix: str = "") -> AsyncIterator[StoredObject]:
        """Every object whose key (without the storage prefix) starts with ``prefix``, sorted.

        S3 lists by whole folders; the folder part of ``prefix`` narrows the listing, the rest
        is matched here. Objects whose names are not valid keys (put there by something else)
        are skipped: no method here could read or delete them anyway.
        """
        wanted = self.prefix + prefix
        folder = wanted.rpartition("/")[0]
        if folder and not is_valid_key(folder):
            return  # no valid key can start with it
        found: builtins.list[StoredObject] = []
        try:
            async for chunk in self._sdk.list(self._store, folder or None, chunk_size=1000):
                for meta in chunk:
                    path = str(meta["path"])
                    key = path[len(self.prefix):]
                    if path.startswith(wanted) and is_valid_key(key):
                        found.append(StoredObject(key=key, size=int(meta["size"]), url=self.url(key),
                                                  modified=meta["last_modified"].timestamp()))
        except StorageError:
            raise
        except Exception as error:
            raise self._failure("list", prefix or "(all keys)", error) from None
        for stored in sorted(found, key=lambda stored: stored.key):
            yield stored

    def _path(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def _failure(self, operation: str, key: str, error: BaseException) -> StorageError:
        return StorageError(f"S3 {operation} of {key!r} in bucket {self.bucket!r} failed: {self._reason(error)}")

    def _reason(self, error: BaseException) -> str:
        """The SDK's message cut to its first line (the rest is a debug dump), the S3 error code
        and message kept from an XML body, and any credential blanked out."""
        text = str(error) or type(error).__name__
        first_line = text.split("\n", 1)[0]
        reason = first_line.split("<?xml", 1)[0].rstrip(": ").strip()
        xml = _XML_ERROR.search(text)
        if xml and xml[1] == "NoSuchBucket" and reason.startswith("Object at location"):
            reason = reason.split(" not found: ", 1)[-1]  # it is the bucket that is not found
        if xml:
            reason += f" ({xml[1]}: {xml[2]})" if xml[2] else f" ({xml[1]})"
        secrets = [*self._secrets, *(os.environ.get(name, "") for name in SECRET_VARIABLES)]
        for secret in secrets:
            if len(secret) >= 4:  # a value that short would blank out ordinary words
                reason = reason.replace(secret, "***")
        return reason if len(reason) <= _LONGEST_REASON else reason[:_LONGEST_REASON - 1] + "…"


def checked_bucket(bucket: str) -> str:
    if not bucket:
        raise ConfigurationError("storage 's3' needs a bucket: set BLOGIMG_STORAGE_BUCKET")
    if not _BUCKET.match(bucket):
        raise ConfigurationError(f"BLOGIMG_STORAGE_BUCKET {bucket!r} is not a bucket name: "
                                 "3 to 255 letters, digits, dots, dashes or underscores")
    return bucket


def checked_endpoint(endpoint: str) -> str:
    """``endpoint`` without a trailing slash, if it is http(s) with a host; plain http only on
    this machine, where nothing on the network can read or change what is sent."""
    parts = urlsplit(endpoint)
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
        raise ConfigurationError("the S3 endpoint (AWS_ENDPOINT_URL) must be an http(s) URL with a host "
                                 "and an optional port, e.g. https://s3.example.com")
    # Only scheme, host and port in messages: an endpoint may carry a user and password.
    shown = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    if parts.username or parts.password:
        raise ConfigurationError(f"the S3 endpoint {shown} must not hold a user or password: "
                                 "give credentials in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigurationError(f"the S3 endpoint {shown} is plain http, which is allowed only on a loopback "
                                 "host (127.0.0.0/8, ::1, localhost): use https")
    return endpoint.rstrip("/")


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bucket_url(bucket: str, endpoint: str | None, region: str, virtual_hosted: bool) -> str:
    """Where the bucket's objects are served: with an endpoint, path style (``endpoint/bucket/``)
    unless virtual-hosted style is asked for (then the endpoint already names the bucket, as
    obstore expects); without one, AWS's own virtual-hosted name for the bucket."""
    if endpoint is None:
        return f"https://{bucket}.s3.{region}.amazonaws.com/"
    if virtual_hosted:
        return endpoint + "/"
    return f"{endpoint}/{bucket}/"


def _bucket_missing(error: FileNotFoundError) -> bool:
    """obstore reports any 404 as a missing object; S3's body says when it is the bucket that is
    missing (a HEAD's answer has no body, so ``exists`` cannot tell and says False)."""
    return "<Code>NoSuchBucket</Code>" in str(error)


def _truthy(value: str) -> bool:
    # As obstore reads a boolean variable.
    return value.strip().lower() in ("1", "true", "yes", "on")
