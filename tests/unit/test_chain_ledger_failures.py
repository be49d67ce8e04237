"""A ledger that cannot record how a call ended: a paid image is kept, a failed call still stops."""

from __future__ import annotations

import logging
import random

import pytest

from blogimg.domain import AttemptRecord, ImageRequest, Outcome, Size
from blogimg.errors import DatabaseUnavailableError
from blogimg.pipeline.chain import ChainSuccess, ProviderChain
from blogimg.testing import FakeProvider
from tests.support import RecordingSleep

REQUEST = ImageRequest(prompt="a lighthouse", size=Size(256, 256))


class UnclosableLedger:
    """Opens rows; every close fails as a database out of reach does, after its retries."""

    def __init__(self) -> None:
        self.opened: list[int] = []
        self.close_tries: list[AttemptRecord] = []

    async def open(self, provider: str, model: str | None, number: int, estimate: float | None) -> object:
        self.opened.append(number)
        return number

    async def close(self, handle: object, record: AttemptRecord) -> None:
        self.close_tries.append(record)
        raise DatabaseUnavailableError("lost the connection to the database 11 times in a row: "
                                       "OperationalError: connection refused")


def chain(provider: FakeProvider) -> ProviderChain:
    return ProviderChain([provider], retry_attempts=2, retry_delay=1.0, sleep=RecordingSleep(), rng=random.Random(7))


async def test_a_paid_image_is_kept_when_its_call_cannot_be_recorded(caplog: pytest.LogCaptureFixture) -> None:
    provider = FakeProvider("a", cost_usd=0.04)
    ledger = UnclosableLedger()
    with caplog.at_level(logging.WARNING, logger="blogimg.pipeline.chain"):
        result = await chain(provider).generate(REQUEST, ledger=ledger)
    assert isinstance(result, ChainSuccess) and result.result.data and result.provider == "a"
    assert len(provider.calls) == 1 and [r.outcome for r in ledger.close_tries] == [Outcome.OK]
    assert [r.outcome for r in result.attempts] == [Outcome.OK]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "connection refused" in warnings[0] and "call 1" in warnings[0], warnings


async def test_a_failed_call_that_cannot_be_recorded_still_stops_the_chain() -> None:
    # Nothing paid is in hand: the job goes back to the queue as before, and no further call is made
    # while the database is out of reach.
    provider = FakeProvider("a", script=[Outcome.TRANSIENT] * 5)
    with pytest.raises(DatabaseUnavailableError):
        await chain(provider).generate(REQUEST, ledger=UnclosableLedger())
    assert len(provider.calls) == 1
