"""Files in a dict: for tests and for users' own tests of code that takes a Storage."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from blogimg.errors import StorageError
from blogimg.storage.base import StoredObject, join_url, validate_key


class MemoryStorage:
    """A Storage that keeps everything in memory and counts writes."""

    def __init__(self, public_base_url: str = "memory://") -> None:
        self.public_base_url = public_base_url
        self.files: dict[str, bytes] = {}
        self.content_types: dict[str, str] = {}
        self.modified: dict[str, float] = {}
        self.puts = 0

    async def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        validate_key(key)
        self.files[key] = bytes(data)
        self.content_types[key] = content_type
        self.modified[key] = time.time()
        self.puts += 1
        return StoredObject(key=key, size=len(data), url=self.url(key))

    async def get(self, key: str) -> bytes:
        try:
            return self.files[validate_key(key)]
        except KeyError:
            raise StorageError(f"no stored file under key {key!r}") from None

    async def exists(self, key: str) -> bool:
        return validate_key(key) in self.files

    async def delete(self, key: str) -> None:
        self.files.pop(validate_key(key), None)
        self.content_types.pop(key, None)
        self.modified.pop(key, None)

    def url(self, key: str) -> str:
        return join_url(self.public_base_url, validate_key(key))

    async def list(self, prefix: str = "") -> AsyncIterator[StoredObject]:
        for key in sorted(self.files):
            if key.startswith(prefix):
                yield StoredObject(key=key, size=len(self.files[key]), url=self.url(key),
                                   modified=self.modified.get(key))
