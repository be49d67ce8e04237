"""Database failures: which ones pass (a lost connection, a lost race) and are retried, and how
the others are told to a person — in one line, without the SQL or the values it carried.

A lost connection — the server restarted, an administrator or a pooler ended the session, the
network dropped — says nothing about the work: the same unit of work on a fresh connection
succeeds. :func:`retrying` runs such a unit again; only units that are safe to repeat may be
given to it, and a unit that may have committed before the connection was lost (the answer to
COMMIT never arrived) must recognise its own earlier success (``attempt > 1``). A get-or-create
that lost a race to a concurrent twin (two ``generate`` runs saving one post) is retried too:
the twin has committed by the time the unique key refuses our row, so the next try finds it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, StatementError

from blogimg.errors import DatabaseUnavailableError

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

#: Waits between tries after a lost connection: about 20 s in all, enough for a server restart
#: or a failover, short enough that a database gone for good is reported rather than waited on.
RECONNECT_DELAYS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0)
#: Tries of a get-or-create that keeps losing races (each loss means a twin committed).
CONFLICT_ATTEMPTS = 5
#: SQLSTATEs of a connection that is gone: class 08 (connection exception), and the server
#: shutting down, crashing or ending this session on an administrator's command (57P01-57P03).
_LOST_STATES = ("57P01", "57P02", "57P03")
#: What psycopg says, with no SQLSTATE, when a new connection cannot be made because the server is
#: down, restarting or failing over. A server that answers "no" (no such database or role, a wrong
#: password) carries no SQLSTATE either, but says none of these: that is reported at once.
_DOWN_SERVER = ("connection refused", "could not connect", "server closed the connection", "connection reset",
                "connection timed out", "timeout expired", "no route to host", "network is unreachable",
                "the database system is starting up", "the database system is shutting down",
                "the database system is in recovery mode", "the database system is not yet accepting connections")


def connection_lost(error: BaseException) -> bool:
    """Whether ``error`` means the connection died under the statement, or could not be made for
    a server that is down or restarting: not that the statement, or the settings, were wrong."""
    if isinstance(error, DatabaseUnavailableError):
        return True
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:  # the dialect saw the connection closed or broken
        return True
    state = getattr(error.orig, "sqlstate", None) or ""
    return state.startswith("08") or state in _LOST_STATES or _server_down(error)


def _server_down(error: DBAPIError) -> bool:
    # SQLAlchemy's is_disconnect looks at an existing connection, so it never flags a connect that
    # failed: a reconnect meeting a stopped postmaster. psycopg gives those no SQLSTATE (its
    # errors have the attribute; SQLite's do not); the message says what happened.
    if not isinstance(error, OperationalError) or getattr(error.orig, "sqlstate", "") is not None:
        return False
    message = str(error.orig).lower()
    return any(phrase in message for phrase in _DOWN_SERVER)


def describe(error: BaseException) -> str:
    """``Class: first line`` of what went wrong; for a SQL error, of the driver's own error.

    SQLAlchemy's message carries the whole statement (and, unless the engine hides them, its
    values: a post's markdown, a prompt): never show that to a user or write it on a row.
    """
    if isinstance(error, StatementError) and error.orig is not None:
        error = error.orig
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


async def retrying(unit: Callable[[int], Awaitable[T]], *, conflicts: bool = False,
                   sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> T:
    """Run ``unit(attempt)`` (attempt 1, 2 …) until it ends without losing its connection.

    With ``conflicts``, a unit refused by a unique key is run again too (a get-or-create that
    lost a race). A connection lost on every try ends in DatabaseUnavailableError.
    """
    conflicts_left = CONFLICT_ATTEMPTS - 1
    attempt = 0
    while True:
        attempt += 1
        try:
            return await unit(attempt)
        except IntegrityError:
            if not conflicts or conflicts_left <= 0:
                raise
            conflicts_left -= 1
            log.debug("a concurrent writer saved the same row first; reading it and trying again")
            continue
        except DBAPIError as error:
            if not connection_lost(error):
                raise
            lost = error
        if attempt > len(RECONNECT_DELAYS):
            raise DatabaseUnavailableError(
                f"lost the connection to the database {attempt} times in a row: {describe(lost)}") from lost
        delay = RECONNECT_DELAYS[attempt - 1]
        log.info("lost the database connection (%s); trying again in %.2f s", describe(lost), delay)
        await sleep(delay)


def reconnecting(method: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Run a method again on a fresh connection when it loses its own: for units safe to repeat."""

    @functools.wraps(method)
    async def retried(*args: P.args, **kwargs: P.kwargs) -> T:
        return await retrying(lambda _attempt: method(*args, **kwargs))

    return retried


def retrying_conflicts(method: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """:func:`reconnecting`, and run again when a unique key refuses it: for a get-or-create."""

    @functools.wraps(method)
    async def retried(*args: P.args, **kwargs: P.kwargs) -> T:
        return await retrying(lambda _attempt: method(*args, **kwargs), conflicts=True)

    return retried
