"""A worker's background loops and a finished one-shot run leave SQLite's write lock free.

``test_cli_errors``'s retry test runs two ``generate`` calls on one SQLite file in one process;
the second was once seen waiting out the busy timeout at BEGIN IMMEDIATE. These tests pin down
what that run relies on: a loop cancelled at any point (even while its BEGIN IMMEDIATE waits in
the driver's thread behind another writer) returns its connection and holds no transaction, and
a finished ``generate`` leaves no connection open at all. Another connection must then get the
write lock within seconds, not after 30.
"""

from __future__ import annotations

import asyncio
import gc
import sqlite3
from pathlib import Path

import aiosqlite
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from blogimg.config import Settings
from blogimg.db.engine import open_database
from blogimg.domain import Outcome
from blogimg.pipeline.chain import ProviderChain
from blogimg.pipeline.circuit_reports import report_loop
from blogimg.testing import FakeProvider
from tests.support import registry_with, write_posts

#: How long another connection may wait for the write lock: far below the 30 s busy timeout.
LOCK_WAIT_SECONDS = 10.0  # a loaded CI machine needed more than 1 s; the symptom was 30 s


def write_lock_is_free(database: Path) -> bool:
    """Whether a fresh connection gets BEGIN IMMEDIATE within LOCK_WAIT_SECONDS."""
    connection = sqlite3.connect(database, timeout=LOCK_WAIT_SECONDS, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        connection.close()


def checked_out(engine: AsyncEngine) -> int:
    return int(engine.pool.checkedout())  # type: ignore[attr-defined]


def open_driver_connections() -> list[aiosqlite.Connection]:
    """aiosqlite connections of this process whose SQLite connection is still open."""
    gc.collect()
    return [found for found in gc.get_objects()
            if isinstance(found, aiosqlite.Connection) and found._connection is not None]


@pytest.fixture
def chain(settings: Settings) -> ProviderChain:
    return ProviderChain.from_settings([FakeProvider("fake"), FakeProvider("other")], settings)


@pytest.mark.parametrize("delay", [0.0, 0.001, 0.005, 0.02])
async def test_a_report_cancelled_while_waiting_for_the_lock_does_not_take_it_later(
        tmp_path: Path, chain: ProviderChain, delay: float) -> None:
    database = tmp_path / "blogimg.db"
    engine, _ = await open_database(f"sqlite+aiosqlite:///{database}")
    try:
        # Another writer holds the lock, so the loop's BEGIN IMMEDIATE waits inside aiosqlite's
        # thread under the busy timeout; cancelled there, it must not hold the lock once it is granted.
        holder = sqlite3.connect(database, timeout=5, isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")
        loop = asyncio.create_task(report_loop(engine, "worker-1", chain, interval=0.001))
        await asyncio.sleep(delay)
        loop.cancel()
        holder.execute("ROLLBACK")
        holder.close()
        await asyncio.wait_for(asyncio.gather(loop, return_exceptions=True), timeout=10)
        assert checked_out(engine) == 0
        assert await asyncio.to_thread(write_lock_is_free, database)
    finally:
        await engine.dispose()


async def test_a_finished_generate_leaves_no_connection_and_the_lock_free(tmp_path: Path, settings: Settings) -> None:
    from blogimg.pipeline.generate import generate

    before = len(open_driver_connections())
    database = tmp_path / "data" / "blogimg.db"
    broken = FakeProvider("broken", script=lambda request, number: Outcome.INVALID)
    for run in range(2):  # as the retry test does: a failing run, then another on the same file
        summary = await generate([write_posts(tmp_path / f"posts-{run}", 1, markers=0, name=f"run{run}-{{number}}",
                                              title=f"Run {run} {{number}}")],
                                 settings, providers=["broken"], registry=registry_with(broken))
        assert summary.failed == 1
        assert len(open_driver_connections()) == before  # the engine was disposed, every connection closed
        assert await asyncio.to_thread(write_lock_is_free, database)
