"""The Storage Protocol every backend implements, and the key rules they all share.

Keys are relative, slash-separated and content-addressed by the caller (``ab/cd/<sha256>.webp``),
so ``put`` of the same key twice writes the same bytes and is safe to repeat after a crash.
"""

from __future__ import annotations

import importlib
import re
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import ModuleType
from typing import Protocol, runtime_checkable
from urllib.parse import quote

from blogimg.errors import ConfigurationError, InvalidKeyError

#: One segment of a key: any characters but the separator, a backslash and control characters;
#: not hidden (a leading dot), and no space at either end (invisible in a listing or a URL).
_SEGMENT = re.compile(r"^[^/\\\x00-\x1f\x7f.\s][^/\\\x00-\x1f\x7f]*(?<!\s)$|^[^/\\\x00-\x1f\x7f.\s]$")
MAX_KEY_LENGTH = 512
MAX_KEY_BYTES = 1024  #: S3's limit, in UTF-8; the strictest of the backends


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


def import_sdk(module: str, *, storage: str, extra: str) -> ModuleType:
    """``module`` imported, or one ConfigurationError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigurationError(f"storage {storage!r} needs its SDK: pip install 'blogimg[{extra}]'") from None


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative key, else raise InvalidKeyError.

    Rejects absolute paths, ``..`` and ``.`` segments, backslashes, empty segments, control
    characters and hidden names, so no backend can be steered outside its root. Unicode and inner
    spaces are allowed (``url`` percent-encodes them).
    """
    if (not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH
            or len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES):
        raise InvalidKeyError(f"invalid storage key {key!r}: empty or longer than {MAX_KEY_LENGTH} characters")
    if not all(_SEGMENT.match(part) for part in key.split("/")) or not _printable(key):
        raise InvalidKeyError(f"invalid storage key {key!r}: only a/b/c.ext relative keys are allowed")
    return key


def is_valid_key(key: str) -> bool:
    """Whether ``key`` passes ``validate_key``: a listing skips names put there by something else
    (``.DS_Store``, `` lead.png``), which no method could read, delete or give a URL for."""
    try:
        validate_key(key)
    except InvalidKeyError:
        return False
    return True


#: Unicode categories no key may hold: controls, invisible format marks (a right-to-left override
#: makes a listing lie), line and paragraph separators, surrogates, private and unassigned points.
_UNPRINTABLE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def _printable(key: str) -> bool:
    return not any(unicodedata.category(character) in _UNPRINTABLE for character in key)


def storage_folder(prefix: str) -> str:
    """``STORAGE_PREFIX`` as a folder: ``/blog``, ``blog`` and ``blog/`` all mean ``blog/``; empty
    means none. The folder must be a valid key itself, so it cannot climb out (``..``) or hide (``.x``)."""
    folder = prefix.strip("/")
    if not folder:
        return ""
    try:
        validate_key(folder)
    except InvalidKeyError:
        raise ConfigurationError(f"BLOGIMG_STORAGE_PREFIX {prefix!r} is not a folder name: "
                                 "use relative a/b names without '..', '.' or empty parts") from None
    return folder + "/"


def join_url(base: str, key: str) -> str:
    """``base`` + ``key`` with exactly one slash between (``memory://`` + key keeps its two); the
    key percent-encoded (UTF-8), its slashes kept."""
    return (base if base.endswith("/") else base + "/") + quote(key, safe="/")
