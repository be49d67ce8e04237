"""The Storage Protocol every backend implements, and the key rules they all share.

Keys are relative, slash-separated and content-addressed by the caller (``ab/cd/<sha256>.webp``),
so ``put`` of the same key twice writes the same bytes and is safe to repeat after a crash.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from blogimg.errors import InvalidKeyError

_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*$")
MAX_KEY_LENGTH = 512


@dataclass(frozen=True, slots=True)
class StoredObject:
    """A file as a backend holds it."""

    key: str
    size: int
    url: str
    modified: float | None = None  #: seconds since the epoch, where the backend knows it


@runtime_checkable
class Storage(Protocol):
    """Put, get and list files by key; every method is safe to call concurrently."""

    async def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        """Store ``data`` under ``key`` atomically (readers never see a partial file)."""
        ...

    async def get(self, key: str) -> bytes:
        """The bytes under ``key``; StorageError if there are none."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None:
        """Remove ``key``; deleting what is not there is not an error."""
        ...

    def url(self, key: str) -> str:
        """The public URL of ``key``."""
        ...

    def list(self, prefix: str = "") -> AsyncIterator[StoredObject]:
        """Every stored file whose key starts with ``prefix``."""
        ...


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative key, else raise InvalidKeyError.

    Rejects absolute paths, ``..`` and ``.`` segments, backslashes, empty segments, control
    characters and hidden names, so no backend can be steered outside its root.
    """
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidKeyError(f"invalid storage key {key!r}: empty or longer than {MAX_KEY_LENGTH}")
    if not _KEY.match(key) or any(part in {".", ".."} for part in key.split("/")):
        raise InvalidKeyError(f"invalid storage key {key!r}: only a/b/c.ext relative keys are allowed")
    return key


def join_url(base: str, key: str) -> str:
    """``base`` + ``key`` with exactly one slash between (``memory://`` + key keeps its two)."""
    return (base if base.endswith("/") else base + "/") + key
