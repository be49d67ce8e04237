"""Choose the storage backend named in Settings.

Cloud backends are imported only when chosen: each needs its SDK (an extra), and a missing one
is one line naming the extra to install.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from blogimg.errors import ConfigurationError
from blogimg.storage.audit import AuditedStorage
from blogimg.storage.base import Storage
from blogimg.storage.cdn import CdnUrls
from blogimg.storage.local import LocalStorage
from blogimg.storage.memory import MemoryStorage

if TYPE_CHECKING:
    from blogimg.config import Settings


def build_storage(settings: Settings, *, writable: bool = True) -> Storage:
    """The backend for ``settings.storage``, behind the CDN's URLs when ``cdn_base_url`` is set,
    each put and delete logged (storage/audit.py).

    ``writable=False`` skips local storage's writability check, for commands that only read (or
    only build URLs).
    """
    storage = _backend(settings, writable=writable)
    if settings.cdn_base_url:
        storage = CdnUrls(storage, settings.cdn_base_url)
    # Outermost, so every put and delete is logged whichever backend or wrapper is below (the audit trail).
    return AuditedStorage(storage, settings.storage)


def _backend(settings: Settings, *, writable: bool) -> Storage:
    if settings.storage == "local":
        local = LocalStorage(settings.storage_path, settings.public_base_url)
        if writable:
            local.check_writable()
        return local
    if settings.storage == "memory":
        return MemoryStorage()
    if settings.storage == "s3":
        from blogimg.storage.s3 import S3Storage

        return S3Storage.from_settings(settings)
    if settings.storage == "cloudinary":
        from blogimg.storage.cloudinary import CloudinaryStorage

        return CloudinaryStorage.from_settings(settings)
    if settings.storage == "vercel-blob":
        from blogimg.storage.vercel_blob import VercelBlobStorage

        return VercelBlobStorage.from_settings(settings)
    raise ConfigurationError(f"unknown storage {settings.storage!r}: use local, memory, s3, cloudinary or vercel-blob")
