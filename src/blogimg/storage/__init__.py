"""Where image files live: one Protocol, one small module per backend."""

from blogimg.storage.base import Storage, StoredObject, validate_key
from blogimg.storage.factory import build_storage
from blogimg.storage.local import LocalStorage
from blogimg.storage.memory import MemoryStorage

__all__ = ["LocalStorage", "MemoryStorage", "Storage", "StoredObject", "build_storage", "validate_key"]
