"""Which database errors are retried, for how long, and how any of them is told in one line."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from blogimg.db.failures import (
    CONFLICT_ATTEMPTS,
    RECONNECT_DELAYS,
    connection_lost,
    describe,
    retrying,
)
from blogimg.errors import DatabaseUnavailableError
from tests.support import RecordingSleep


class AdminShutdown(Exception):
    sqlstate = "57P01"


def lost() -> OperationalError:
    return OperationalError("UPDATE generated_images SET status=%(status)s", {"status": "secret"},
                            AdminShutdown("terminating connection due to administrator command\nmore"))


def refused() -> IntegrityError:
    return IntegrityError("INSERT INTO blog_posts (markdown) VALUES (%(markdown)s)", {"markdown": "a secret post"},
                          Exception('duplicate key value violates unique constraint "uq_blog_posts_slug"\nDETAIL: x'))


def test_a_lost_connection_is_known_by_its_state_or_by_the_driver() -> None:
    assert connection_lost(lost())
    invalidated = OperationalError("SELECT 1", {}, Exception("consuming input failed"), connection_invalidated=True)
    assert connection_lost(invalidated)
    assert not connection_lost(refused())
    assert not connection_lost(OperationalError("SELECT 1", {}, Exception("database is locked")))


def test_a_sql_error_is_described_by_the_drivers_class_and_first_line_only() -> None:
    assert describe(refused()) == 'Exception: duplicate key value violates unique constraint "uq_blog_posts_slug"'
    assert describe(lost()) == "AdminShutdown: terminating connection due to administrator command"
    assert describe(ValueError("bad\nworse")) == "ValueError: bad"


async def test_a_unit_that_loses_its_connection_runs_again_then_gives_up_in_one_line() -> None:
    sleep = RecordingSleep()
    tries: list[int] = []

    async def twice_lost(attempt: int) -> str:
        tries.append(attempt)
        if attempt < 3:
            raise lost()
        return "done"

    assert await retrying(twice_lost, sleep=sleep) == "done"
    assert tries == [1, 2, 3] and sleep.delays == list(RECONNECT_DELAYS[:2])

    async def always_lost(attempt: int) -> str:
        raise lost()

    with pytest.raises(DatabaseUnavailableError) as raised:
        await retrying(always_lost, sleep=RecordingSleep())
    assert "secret" not in str(raised.value) and "UPDATE" not in str(raised.value)
    assert f"{len(RECONNECT_DELAYS) + 1} times in a row" in str(raised.value)


async def test_a_lost_race_is_run_again_only_when_asked_and_only_a_few_times() -> None:
    tries: list[int] = []

    async def always_refused(attempt: int) -> None:
        tries.append(attempt)
        raise refused()

    with pytest.raises(IntegrityError):
        await retrying(always_refused, sleep=RecordingSleep())
    assert tries == [1]
    tries.clear()
    with pytest.raises(IntegrityError):
        await retrying(always_refused, conflicts=True, sleep=RecordingSleep())
    assert len(tries) == CONFLICT_ATTEMPTS


# --- a server that is down: the connection is refused before any statement -----------------------


async def connect_error(url: str) -> BaseException:
    """The error a real engine raises when it cannot connect to ``url``."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url, pool_pre_ping=True)
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as error:
        return error
    finally:
        await engine.dispose()
    raise AssertionError(f"{url} accepted a connection")


async def test_a_server_that_refuses_connections_is_a_lost_connection_and_is_waited_for() -> None:
    # A restart or a failover: the postmaster is not listening yet. A port bound but never
    # listened on refuses every connection, as a stopped server's does.
    pytest.importorskip("psycopg")
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"postgresql+psycopg://postgres@127.0.0.1:{closed.getsockname()[1]}/test"
        error = await connect_error(url)
        assert isinstance(error, OperationalError) and "refused" in str(error.orig).lower(), error
        assert connection_lost(error)

        tries: list[int] = []

        async def connect(attempt: int) -> None:
            tries.append(attempt)
            raise await connect_error(url)

        sleep = RecordingSleep()
        with pytest.raises(DatabaseUnavailableError, match="Connection refused"):
            await retrying(connect, sleep=sleep)
    assert len(tries) == len(RECONNECT_DELAYS) + 1 and sleep.delays == list(RECONNECT_DELAYS)


async def test_a_server_that_answers_no_is_not_waited_for() -> None:
    # A database or role that does not exist fails the connection too, also without an SQLSTATE
    # from psycopg: that is a mistake to report at once, not an outage to wait out.
    pytest.importorskip("psycopg")
    from sqlalchemy.engine import make_url

    from tests.postgres import server_url

    server = make_url(server_url())
    for url in (server.set(database="blogimg_no_such_database"), server.set(username="blogimg_no_such_role")):
        error = await connect_error(url.render_as_string(hide_password=False))
        assert isinstance(error, OperationalError) and "does not exist" in str(error.orig), error
        assert not connection_lost(error)
