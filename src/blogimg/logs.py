"""Log lines as text (the default) or as one JSON object a line, with the job they are about.

``BLOGIMG_LOG_FORMAT=json`` makes every line on stderr a JSON object: ``time`` (UTC, ISO 8601),
``level``, ``logger``, ``message`` and, when known, the context fields :data:`CONTEXT_FIELDS`. The
worker sets the context around a job (:func:`bind`), so a line logged anywhere below it — the
chain, storage's audit trail, a thread running the imaging — carries the image and batch ids
without passing them along. A call may add fields of its own with ``extra``; only the names in
:data:`FIELDS` are written, so nothing else a record carries (a SQL statement's parameters, a
post's text, a key) can reach a log line by accident.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]

#: What a job's lines carry when known: set by the worker around a job and each provider call.
CONTEXT_FIELDS = ("image_id", "batch_id", "provider", "model", "attempt", "outcome", "duration_ms")
#: Fields a line may add with ``extra``: the context's, and the storage audit trail's.
FIELDS = (*CONTEXT_FIELDS, "operation", "key", "bytes", "sha256", "storage", "status")
#: Loggers that say too much at INFO: statements with their values, request URLs.
_QUIET = ("aiosqlite", "sqlalchemy", "httpx", "httpcore", "httpx2", "botocore", "urllib3")

_context: ContextVar[Mapping[str, Any] | None] = ContextVar("blogimg_log_context", default=None)


def bind(**fields: Any) -> None:
    """Add ``fields`` to the context of this task (an asyncio task has its own copy, so a job's
    fields end with its task). None values are left out."""
    _context.set({**(_context.get() or {}), **{name: value for name, value in fields.items() if value is not None}})


@contextmanager
def context(**fields: Any) -> Iterator[None]:
    """``fields`` in the log context for the ``with`` block only."""
    token = _context.set({**(_context.get() or {}), **{name: value for name, value in fields.items() if value is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def current() -> dict[str, Any]:
    """The context fields now in force."""
    return dict(_context.get() or {})


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and the allowed context fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_context.get() or {})
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure(log_format: LogFormat = "text", *, debug: bool = False) -> None:
    """Send blogimg's logs (and every library's) to stderr in ``log_format``.

    Text keeps what blogimg always printed: warnings and errors only (the CLI shows progress
    itself). JSON is for a log collector, so it also carries INFO: one line per provider call
    and per finished job. ``debug`` shows DEBUG lines in either format.
    """
    level = logging.DEBUG if debug else logging.INFO if log_format == "json" else logging.WARNING
    handler = _OurHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json"
                         else logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in [handler for handler in root.handlers if isinstance(handler, _OurHandler)]:
        root.removeHandler(old)  # configured again (settings loaded twice): one line per record, not two
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(log_format == "json")  # a warning is a line like any other, not raw text
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(level, logging.INFO) if name == "aiosqlite" else max(level, logging.WARNING))


def is_json() -> bool:
    """Whether the root logger writes JSON (so a command's own stderr lines must too)."""
    return any(isinstance(handler, _OurHandler) and isinstance(handler.formatter, JsonFormatter)
               for handler in logging.getLogger().handlers)


class _OurHandler(logging.StreamHandler):
    """stderr, told apart from handlers others installed (a test's log capture stays)."""
