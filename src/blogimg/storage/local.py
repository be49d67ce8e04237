"""Files on local disk, written atomically.

A write goes to a temporary file in the destination directory, is fsynced, then renamed over
the final name, and the directory is fsynced: after a crash the key holds either nothing or
the whole file, never a torn one. Temporary names start with ``.tmp-`` so listing skips them
and cleanup can find leftovers.
"""

from __future__ import annotations

import asyncio
import builtins
import errno
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from blogimg.errors import ConfigurationError, InvalidKeyError, StorageError, StorageFullError
from blogimg.storage.base import StoredObject, is_valid_key, join_url, validate_key

TEMPORARY_PREFIX = ".tmp-"
#: Errors that mean "no room", not "this file": a full disk, a used-up quota.
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


class LocalStorage:
    """Stores files under ``root``; URLs are ``public_base_url`` + key."""

    def __init__(self, root: Path | str, public_base_url: str = "/files/") -> None:
        self.root = Path(root).resolve()
        self.public_base_url = public_base_url

    def check_writable(self) -> None:
        """Create the root if needed and prove a file can be written there; one clear error if not."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=TEMPORARY_PREFIX):
                pass
        except OSError as error:
            raise ConfigurationError(
                f"storage directory {self.root} is not writable: {error.strerror or error}"
            ) from None

    def path_for(self, key: str) -> Path:
        path = (self.root / validate_key(key)).resolve()
        if not path.is_relative_to(self.root):
            raise InvalidKeyError(f"invalid storage key {key!r}: resolves outside the storage root")
        return path

    async def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        path = self.path_for(key)
        try:
            await asyncio.to_thread(_write_atomically, path, data)
        except OSError as error:
            if error.errno in _FULL:
                # The folder, not the file: what a person must free space on (or move elsewhere).
                raise StorageFullError(f"the disk of the storage folder {self.root} is full "
                                       f"({error.strerror or error}); free some space and run again: "
                                       "images not made yet stay queued") from None
            raise StorageError(f"cannot write {path}: {error.strerror or error}") from None
        return StoredObject(key=key, size=len(data), url=self.url(key))

    async def get(self, key: str) -> bytes:
        path = self.path_for(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise StorageError(f"no stored file under key {key!r}") from None

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.path_for(key).is_file)

    async def delete(self, key: str) -> None:
        """Remove the file, then the shard folders it leaves empty (never the root itself)."""
        path = self.path_for(key)
        await asyncio.to_thread(_unlink_and_prune, path, self.root)

    def url(self, key: str) -> str:
        return join_url(self.public_base_url, validate_key(key))

    async def list(self, prefix: str = "") -> AsyncIterator[StoredObject]:
        objects = await asyncio.to_thread(self._scan)
        for key, size, modified in objects:
            if key.startswith(prefix) and is_valid_key(key):  # .DS_Store and the like: not ours
                yield StoredObject(key=key, size=size, url=self.url(key), modified=modified)

    def _scan(self) -> builtins.list[tuple[str, int, float]]:
        found = []
        for directory, _, files in os.walk(self.root):
            for name in files:
                if name.startswith(TEMPORARY_PREFIX):
                    continue
                path = Path(directory, name)
                stat = path.stat()
                found.append((path.relative_to(self.root).as_posix(), stat.st_size, stat.st_mtime))
        return sorted(found)


def _unlink_and_prune(path: Path, root: Path) -> None:
    path.unlink(missing_ok=True)
    folder = path.parent
    while folder != root and folder.is_relative_to(root):
        try:
            folder.rmdir()  # only ever removes an empty folder: a file written meanwhile keeps it
        except OSError:  # not empty (or already gone): the folders above are not empty either
            return
        folder = folder.parent


def _temporary_beside(path: Path) -> tuple[int, str]:
    # A delete may prune the (then empty) shard folder between our mkdir and mkstemp: make it again.
    for attempt in range(3):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return tempfile.mkstemp(dir=path.parent, prefix=TEMPORARY_PREFIX)
        except FileNotFoundError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _write_atomically(path: Path, data: bytes) -> None:
    descriptor, temporary = _temporary_beside(path)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
