"""Opening the catalogue: the engine, SQLite's settings, and migrations on first use.

On SQLite every transaction that may write begins IMMEDIATE (see ``create_engine``); a connection
from :func:`reader` begins a deferred one instead, for reads that must not queue for the write lock.

Every engine hides SQL parameters from its errors and logs (they hold posts' markdown and
prompts), and says in one line which disk is full when the database's is.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import URL, Connection, ExceptionContext, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from blogimg.db.failures import retrying
from blogimg.errors import ConfigurationError, DatabaseError, DatabaseFullError

MIGRATIONS = Path(__file__).with_name("migrations")
SUPPORTED_URLS = "sqlite+aiosqlite:///path/to/blogimg.db or postgresql+psycopg://user@host/database"
#: The PostgreSQL advisory lock that migrations hold ("blogmigr"); the budget's lock is another.
MIGRATION_LOCK_KEY = 0x626C6F676D696772
_SQLITE_FULL = 13  #: SQLite's primary result code for "database or disk is full"
_POSTGRES_DISK_FULL = "53100"
#: The execution option :func:`reader` sets: the connection only reads, so SQLite may begin deferred.
READ_ONLY = "blogimg_read_only"


def create_engine(database_url: str) -> AsyncEngine:
    """An async engine for ``database_url``; SQLite gets WAL, a busy timeout and write-locking BEGIN."""
    url = _parse(database_url)
    if url.get_backend_name() == "postgresql":
        return _postgres_engine(url)
    if url.get_backend_name() != "sqlite":
        # Only these two are migrated and tested; anything else would fail later and less clearly.
        raise ConfigurationError(f"database URLs starting {url.drivername}:// are not supported; use {SUPPORTED_URLS}")
    if url.get_driver_name() != "aiosqlite":
        raise ConfigurationError("SQLite URLs must use the async driver: sqlite+aiosqlite:///path")
    if url.database and url.database != ":memory:":
        _ensure_directory(Path(url.database).parent)
    engine = create_async_engine(url, connect_args={"timeout": 30}, hide_parameters=True)
    _report_full_disk(engine, f"the disk holding the database {Path(url.database or '').resolve()}"
                      if url.database and url.database != ":memory:" else "the disk (in-memory database)")

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
        # A connection marked read-only (``reader``) never upgrades, so it needs no write lock,
        # and taking one would make every read wait behind every writer.
        connection.exec_driver_sql("BEGIN" if connection.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")

    return engine


def reader(engine: AsyncEngine) -> AsyncEngine:
    """``engine`` for reads only: on SQLite its transactions begin deferred, without the write lock.

    Nothing may be written through it: a deferred transaction that tries to write can fail at once
    with SQLITE_BUSY instead of waiting its turn (the reason writers begin IMMEDIATE). It shares
    ``engine``'s pool; on PostgreSQL it changes nothing.
    """
    return engine.execution_options(**{READ_ONLY: True})


def sqlite_file(database_url: str) -> Path | None:
    """The file a SQLite URL names; None for an in-memory database or any other backend."""
    url = _parse(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:") or url.query.get("uri"):
        return None  # a "file:" URI may name shared memory: leave it to SQLite
    return Path(url.database)


def _parse(database_url: str) -> URL:
    try:
        return make_url(database_url)
    except ArgumentError:
        raise ConfigurationError(f"database URL {database_url!r} is not a valid SQLAlchemy URL") from None


def _postgres_engine(url: URL) -> AsyncEngine:
    if url.drivername != "postgresql+psycopg":
        # postgresql:// alone means psycopg2, which is not async; other drivers are untested.
        raise ConfigurationError("PostgreSQL URLs must use the psycopg driver: postgresql+psycopg://user@host/database "
                                 "(with pip install 'blogimg[postgres]')")
    try:
        # pre-ping: a pooled connection the server ended while it sat idle is replaced at checkout
        # instead of failing the first statement given to it.
        engine = create_async_engine(url, pool_pre_ping=True, hide_parameters=True)
    except ImportError as error:  # SQLAlchemy imports the driver only now
        raise ConfigurationError(
            f"PostgreSQL needs the postgres extra ({error.name or 'psycopg'} is not installed): "
            "pip install 'blogimg[postgres]'") from None
    _report_full_disk(engine, f"the disk of the PostgreSQL server at {url.host or 'localhost'}:{url.port or 5432} "
                              f"(database {url.database})")
    return engine


def _report_full_disk(engine: AsyncEngine, where: str) -> None:
    """Turn the driver's "disk full" into one line that says which disk, wherever it is raised."""

    @event.listens_for(engine.sync_engine, "handle_error")
    def _translate(context: ExceptionContext) -> None:
        original = context.original_exception
        code = getattr(original, "sqlite_errorcode", None)
        full = (code is not None and code & 0xFF == _SQLITE_FULL) \
            or "database or disk is full" in str(original) \
            or getattr(original, "sqlstate", None) == _POSTGRES_DISK_FULL
        if full:
            first_line = (str(original).strip().splitlines() or [type(original).__name__])[0]
            # Raised from here, it replaces SQLAlchemy's error, which would carry the statement.
            raise DatabaseFullError(f"{where} is full ({first_line}); free some space and run again: "
                                    "images not made yet stay queued") from original


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest Alembic revision; cheap when it already is.

    On SQLite the migrations run with foreign keys off, as SQLite asks for schema changes: a
    table can only be altered by copying it, and dropping the old copy of a parent table would
    otherwise cascade into its children. The keys are checked before the change commits.
    """
    try:
        # One transaction under one lock: on a connection lost half-way, nothing happened, and a
        # repeat that finds the schema current (the first try committed unseen) does nothing.
        await retrying(lambda _attempt: _migrate_once(engine))
    except OperationalError as error:
        first_line = (str(error.orig).strip().splitlines() or [type(error.orig).__name__])[0]
        raise DatabaseError(f"cannot open the database: {first_line}") from None


async def _migrate_once(engine: AsyncEngine) -> None:
    sqlite = engine.dialect.name == "sqlite"
    async with engine.connect() as connection:
        if sqlite:
            await _sqlite_foreign_keys(connection, enabled=False)
        try:
            async with connection.begin():
                await lock_migrations(connection)
                await connection.run_sync(_upgrade)
                if sqlite and (await connection.exec_driver_sql("PRAGMA foreign_key_check")).first():
                    raise DatabaseError("a migration left rows whose parent is missing; nothing was changed")
        finally:
            if sqlite:
                await _sqlite_foreign_keys(connection, enabled=True)


async def lock_migrations(connection: AsyncConnection) -> None:
    """Make concurrent migrations of one database wait for each other, in this transaction.

    Eight commands started at once on a fresh database would otherwise all find it empty and
    all create the schema: all but one then fail on ``alembic_version``. The lock is held until
    the transaction ends, and a waiter then finds the schema current. SQLite needs nothing more:
    every transaction but a reader's begins IMMEDIATE, so the migration already holds the write lock.
    """
    if connection.dialect.name == "postgresql":
        await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})


async def _sqlite_foreign_keys(connection: AsyncConnection, *, enabled: bool) -> None:
    # On the driver's connection, outside any transaction: SQLite ignores this pragma inside one.
    driver = (await connection.get_raw_connection()).driver_connection
    assert driver is not None, "a connection just checked out of the pool is open"
    await driver.execute(f"PRAGMA foreign_keys={'ON' if enabled else 'OFF'}")


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
