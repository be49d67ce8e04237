"""When a test fails on SQLite's "database is locked", say who held the write lock.

A clean-clone CI run now and then fails a test with ``database is locked`` at BEGIN IMMEDIATE:
one writer waited out the 30 s busy timeout. Locally, a whole run of the integration and unit
tests (with this report watching) saw no BEGIN IMMEDIATE wait over two seconds, so the cause has
to be caught where it happens. This plugin remembers, per database file, which task last took the
write lock, from where, and whether its transaction has ended. When a BEGIN IMMEDIATE fails as
locked it takes a snapshot: that holder, every aiosqlite connection of the process still inside a
transaction, and the stack of every task of the running loop. A failing test's report then shows
the snapshot in a section of its own.

Watching costs a frame walk per write transaction; it changes nothing the code under test does.
"""

from __future__ import annotations

import asyncio
import gc
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

BEGIN = "BEGIN IMMEDIATE"
LOCATIONS = ("/blogimg/", "/tests/")  #: frames worth showing: the project's and the tests'


@dataclass
class Holder:
    connection: int  #: id() of the SQLAlchemy Connection that took the lock
    task: str
    stack: str
    since: float = field(default_factory=time.monotonic)
    ended: bool = False


HOLDERS: dict[str, Holder] = {}  #: database file → the last transaction that took its write lock
SNAPSHOTS: list[str] = []  #: taken since the current test began


def _frames(frames: list[FrameType]) -> str:
    """The project's frames among ``frames``, newest first."""
    lines = [f"    {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}" for frame in frames
             if any(part in frame.f_code.co_filename for part in LOCATIONS)]
    return "\n".join(lines) or "    (no project frame)"


def _chain(frame: FrameType | None) -> list[FrameType]:
    """A running frame and its callers, newest first."""
    frames = []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    return frames


def _awaiting(task: asyncio.Task) -> list[FrameType]:
    """A suspended task's frames, newest first: its coroutine and what each awaits in turn (a
    suspended coroutine's frame is not linked to its caller, and Task.get_stack shows only the outer one)."""
    frames: list[FrameType] = []
    awaited: Any = task.get_coro()
    while awaited is not None:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is not None:
            frames.append(frame)
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return frames[::-1]


def _caller() -> tuple[str, str]:
    """The current task's name, and its stack from where it awaited the driver (the greenlet's parent)."""
    import greenlet

    current = greenlet.getcurrent()
    parent = current.parent.gr_frame if current.parent is not None else None
    try:
        task = asyncio.current_task()
    except RuntimeError:
        task = None
    return (task.get_name() if task is not None else "(no task)"), _frames(_chain(parent))


def _database(connection: Any) -> str:
    return str(connection.engine.url.database)


def _snapshot(database: str, waiter: str, stack: str) -> str:
    holder = HOLDERS.get(database)
    parts = [f"BEGIN IMMEDIATE on {database} failed as locked in task {waiter}, from:\n{stack}"]
    if holder is None:
        parts.append("no transaction of this process had taken the lock")
    else:
        parts.append(f"last to take the lock: task {holder.task}, {time.monotonic() - holder.since:.1f} s ago, "
                     f"{'ended' if holder.ended else 'STILL OPEN'}, from:\n{holder.stack}")
    gc.collect()
    inside = [found for found in gc.get_objects() if isinstance(found, aiosqlite.Connection)
              and found._connection is not None and found._connection.in_transaction]
    parts.append(f"aiosqlite connections inside a transaction: {len(inside)}")
    try:
        tasks = asyncio.all_tasks()
    except RuntimeError:
        tasks = set()
    for task in sorted(tasks, key=lambda task: task.get_name()):
        parts.append(f"task {task.get_name()}:\n{_frames(_awaiting(task))}")
    return "\n\n".join(parts)


@event.listens_for(Engine, "after_cursor_execute")
def _took_lock(connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
    if statement == BEGIN:
        task, stack = _caller()
        HOLDERS[_database(connection)] = Holder(id(connection), task, stack)


def _ended(connection: Any) -> None:
    holder = HOLDERS.get(_database(connection))
    if holder is not None and holder.connection == id(connection):
        holder.ended = True


@event.listens_for(Engine, "commit")
def _committed(connection: Any) -> None:
    _ended(connection)


@event.listens_for(Engine, "rollback")
def _rolled_back(connection: Any) -> None:
    _ended(connection)


@event.listens_for(Engine, "handle_error")
def _failed(context: Any) -> None:
    if context.statement == BEGIN and "locked" in str(context.original_exception) and context.connection is not None:
        task, stack = _caller()
        SNAPSHOTS.append(_snapshot(_database(context.connection), task, stack))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    SNAPSHOTS.clear()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    outcome = yield
    report = outcome.get_result()
    if report.failed and SNAPSHOTS:
        report.sections.append(("who held SQLite's write lock", "\n\n---\n\n".join(SNAPSHOTS)))
