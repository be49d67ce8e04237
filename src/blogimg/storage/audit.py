"""The storage audit trail: every put and delete, on any backend, is one log line.

A put says its key, its size in bytes and the SHA-256 of the bytes, so a stored object can be
checked against the line that wrote it; a delete says its key. Nothing else is logged: no URL
(a presigned one carries a signature), no content, no credentials. The line goes out after the
backend answered, at INFO on the ``blogimg.storage.audit`` logger (``BLOGIMG_LOG_FORMAT=json``
shows INFO lines, each with the job's image id when a worker stored it); a failed put or delete
is logged at INFO too, with status "failed", and its error raised as before (the caller reports
the error itself, in one line: a warning here would repeat it for every object).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator

from blogimg.storage.base import Storage, StoredObject

log = logging.getLogger("blogimg.storage.audit")


class AuditedStorage:
    """``storage`` with each put and delete logged; reads pass straight through."""

    def __init__(self, storage: Storage, name: str) -> None:
        self.storage = storage
        self.name = name  #: the backend's setting (local, s3, …), on every line

    async def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        checksum = hashlib.sha256(data).hexdigest()
        fields = {"operation": "put", "key": key, "bytes": len(data), "sha256": checksum, "storage": self.name}
        try:
            stored = await self.storage.put(key, data, content_type)
        except Exception:
            log.info("storage put failed", extra={**fields, "status": "failed"})
            raise
        log.info("storage put", extra=fields)
        return stored

    async def get(self, key: str) -> bytes:
        return await self.storage.get(key)

    async def exists(self, key: str) -> bool:
        return await self.storage.exists(key)

    async def delete(self, key: str) -> None:
        fields = {"operation": "delete", "key": key, "storage": self.name}
        try:
            await self.storage.delete(key)
        except Exception:
            log.info("storage delete failed", extra={**fields, "status": "failed"})
            raise
        log.info("storage delete", extra=fields)

    def url(self, key: str) -> str:
        return self.storage.url(key)

    def list(self, prefix: str = "") -> AsyncIterator[StoredObject]:
        return self.storage.list(prefix)
