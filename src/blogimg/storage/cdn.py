"""A CDN in front of any backend: the same files, every URL from the CDN's base instead.

URLs are built from keys when read (never stored), so setting ``CDN_BASE_URL`` moves every
image, old ones included, at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

from blogimg.storage.base import Storage, StoredObject, join_url, validate_key


class CdnUrls:
    """``storage`` with each URL replaced by ``base_url`` + key; everything else is passed through."""

    def __init__(self, storage: Storage, base_url: str) -> None:
        self.storage = storage
        self.base_url = base_url

    async def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        return replace(await self.storage.put(key, data, content_type), url=self.url(key))

    async def get(self, key: str) -> bytes:
        return await self.storage.get(key)

    async def exists(self, key: str) -> bool:
        return await self.storage.exists(key)

    async def delete(self, key: str) -> None:
        await self.storage.delete(key)

    def url(self, key: str) -> str:
        return join_url(self.base_url, validate_key(key))

    async def list(self, prefix: str = "") -> AsyncIterator[StoredObject]:
        async for stored in self.storage.list(prefix):
            yield replace(stored, url=self.url(stored.key))
