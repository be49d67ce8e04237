"""Choose the storage backend named in Settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from blogimg.errors import ConfigurationError
from blogimg.storage.base import Storage
from blogimg.storage.local import LocalStorage
from blogimg.storage.memory import MemoryStorage

if TYPE_CHECKING:
    from blogimg.config import Settings


def build_storage(settings: Settings, *, writable: bool = True) -> Storage:
    """The backend for ``settings.storage``; local storage is checked for writability first.

    ``writable=False`` skips the check, for commands that only read (or only build URLs).
    """
    if settings.storage == "local":
        storage = LocalStorage(settings.storage_path, settings.public_base_url)
        if writable:
            storage.check_writable()
        return storage
    if settings.storage == "memory":
        return MemoryStorage()
    raise ConfigurationError(
        f"storage {settings.storage!r} is not available in this version; use 'local' or 'memory'"
    )
