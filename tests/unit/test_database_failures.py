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
