"""Opening the catalogue: the engine, SQLite's settings, and migrations on first use."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from blogimg.errors import ConfigurationError, DatabaseError

MIGRATIONS = Path(__file__).with_name("migrations")


def create_engine(database_url: str) -> AsyncEngine:
    """An async engine for ``database_url``; SQLite gets WAL, a busy timeout and write-locking BEGIN."""
    try:
        url = make_url(database_url)
    except ArgumentError:
        raise ConfigurationError(f"database URL {database_url!r} is not a valid SQLAlchemy URL") from None
    if url.get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=True)
    if url.get_driver_name() != "aiosqlite":
        raise ConfigurationError("SQLite URLs must use the async driver: sqlite+aiosqlite:///path")
    if url.database and url.database != ":memory:":
        _ensure_directory(Path(url.database).parent)
    engine = create_async_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine.sync_engine, "connect")
    def _configure(connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        connection.isolation_level = None
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Connection) -> None:
        # Take the write lock up front: a deferred transaction that reads and then writes can
        # fail with SQLITE_BUSY at once when another writer committed in between, whereas
        # BEGIN IMMEDIATE waits its turn under busy_timeout. WAL keeps readers unblocked.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest Alembic revision; cheap when it already is."""
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade)
    except OperationalError as error:
        raise DatabaseError(f"cannot open the database: {error.orig}") from None


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _upgrade(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _ensure_directory(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigurationError(
            f"database directory {directory} cannot be created: {error.strerror or error}"
        ) from None
    probe = directory / ".blogimg-write-test"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise ConfigurationError(
            f"database directory {directory} is not writable: {error.strerror or error}"
        ) from None


async def open_database(database_url: str) -> tuple[AsyncEngine, async_sessionmaker[AsyncSession]]:
    """Create the engine, migrate, and return it with a session factory."""
    engine = create_engine(database_url)
    try:
        await migrate(engine)
    except BaseException:
        await asyncio.shield(engine.dispose())
        raise
    return engine, session_factory(engine)
