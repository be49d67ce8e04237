"""A post's bytes from disk: regular files only, and never more than the size limit.

A named pipe called ``x.md`` blocks ``open`` until a writer comes and ``read`` until it leaves; a
character device (``/dev/zero``) never ends; a sparse file can claim gigabytes it does not hold.
So the file's kind and size are checked with ``stat`` before it is opened, and again on the open
descriptor (it may have been swapped meanwhile), ``O_NONBLOCK`` keeps a pipe swapped in from
blocking the open, and at most limit + 1 bytes are read, so a file that grows after the check
still cannot get past the limit.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import NoReturn

from blogimg.errors import InputError, PostParseError

MAX_POST_BYTES = 5_000_000
# O_NONBLOCK and O_NOCTTY do not exist on Windows, where named pipes are not files anyway.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def read_post_bytes(path: Path, limit: int = MAX_POST_BYTES) -> bytes:
    """The whole file, or InputError (not a regular file, unreadable) or PostParseError (too large)."""
    try:
        _check(path, os.stat(path), limit)
        descriptor = os.open(path, _OPEN_FLAGS)
    except OSError as error:
        raise InputError(f"{path}: cannot be read: {error.strerror or error}") from None
    try:
        _check(path, os.fstat(descriptor), limit)
        return _read_at_most(path, descriptor, limit)
    except OSError as error:
        raise InputError(f"{path}: cannot be read: {error.strerror or error}") from None
    finally:
        os.close(descriptor)


def _check(path: Path, status: os.stat_result, limit: int) -> None:
    if not stat.S_ISREG(status.st_mode):
        kind = next((name for test, name in _KINDS if test(status.st_mode)), "not a regular file")
        raise InputError(f"{path}: is {kind}, not a regular file; blogimg reads posts only from regular files")
    if status.st_size > limit:
        _too_large(path, limit)


def _read_at_most(path: Path, descriptor: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    received = 0
    while received <= limit:
        chunk = os.read(descriptor, min(1 << 20, limit + 1 - received))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        received += len(chunk)
    _too_large(path, limit)


def _too_large(path: Path, limit: int) -> NoReturn:
    raise PostParseError(f"{path}: larger than {limit / 1_000_000:g} MB; is it a post?")
