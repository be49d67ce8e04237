"""The fallback chain with FakeProvider: retries, backoff, fallback, refusals, pauses."""

from __future__ import annotations

import asyncio
import random

import pytest

from blogimg.domain import AttemptRecord, ImageRequest, Outcome, ProviderImage, Size
from blogimg.pipeline.chain import ProviderChain, backoff_delay
from blogimg.providers.base import ProviderInfo
from blogimg.testing import FakeProvider

T, OK, R, Q, I, E = Outcome.TRANSIENT, Outcome.OK, Outcome.REFUSED, Outcome.QUOTA, Outcome.INVALID, Outcome.EMPTY  # noqa: E741 (short names keep scripts readable)
REQUEST = ImageRequest(prompt="a lighthouse", size=Size(256, 256))


class RecordingSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def chain(*providers: FakeProvider, retries: int = 2, **options) -> tuple[ProviderChain, RecordingSleep]:
    sleep = RecordingSleep()
    built = ProviderChain(list(providers), retry_attempts=retries, retry_delay=1.0, sleep=sleep,
                          rng=random.Random(7), **options)
    return built, sleep


async def run(built: ProviderChain) -> tuple[object, list[AttemptRecord]]:
    records: list[AttemptRecord] = []

    async def record(attempt: AttemptRecord) -> None:
        records.append(attempt)

    return await built.generate(REQUEST, on_attempt=record), records


async def test_transient_failures_are_retried_then_succeed() -> None:
    provider = FakeProvider("a", script=[T, T, OK])
    result, records = await run(chain(provider)[0])
    assert result.ok and result.provider == "a"
    assert [r.outcome for r in records] == [T, T, OK]
    assert [r.attempt for r in records] == [1, 2, 3]
    assert len(provider.calls) == 3


async def test_fallback_after_retries_are_exhausted() -> None:
    first, second = FakeProvider("a", script=[T] * 10), FakeProvider("b")
    built, sleep = chain(first, second, retries=2)
    result, records = await run(built)
    assert result.ok and result.provider == "b"
    assert [(r.provider, r.outcome) for r in records] == [("a", T), ("a", T), ("a", T), ("b", OK)]
    assert len(sleep.delays) == 2  # between the three calls to a; none before falling back


async def test_backoff_grows_exponentially_with_bounded_jitter() -> None:
    rng = random.Random(1)
    for retry in range(5):
        delay = backoff_delay(retry, 1.0, 60.0, rng)
        assert 0.5 * 2**retry <= delay <= 1.5 * 2**retry
    assert backoff_delay(20, 1.0, 60.0, rng) <= 90.0
    built, sleep = chain(FakeProvider("a", script=[T, T, T]), retries=2)
    await run(built)
    assert 0.5 <= sleep.delays[0] <= 1.5 and 1.0 <= sleep.delays[1] <= 3.0


async def test_retry_after_wins_and_an_overlong_one_moves_on() -> None:
    built, sleep = chain(FakeProvider("a", script=[T, OK], retry_after=7.5))
    result, _ = await run(built)
    assert result.ok and sleep.delays == [7.5]
    slow, spare = FakeProvider("a", script=[T], retry_after=3600), FakeProvider("b")
    built, sleep = chain(slow, spare, max_delay=60)
    result, records = await run(built)
    assert result.provider == "b" and sleep.delays == [] and len(slow.calls) == 1


async def test_refusal_is_never_retried_and_falls_back_only_when_allowed() -> None:
    refuser, spare = FakeProvider("a", script=[R] * 5), FakeProvider("b")
    result, records = await run(chain(refuser, spare)[0])
    assert result.outcome is R and not result.ok
    assert len(refuser.calls) == 1 and spare.calls == []
    refuser, spare = FakeProvider("a", script=[R] * 5), FakeProvider("b")
    result, _ = await run(chain(refuser, spare, fallback_on_refusal=True)[0])
    assert result.ok and result.provider == "b" and len(refuser.calls) == 1


async def test_quota_pauses_the_provider_for_the_rest_of_the_run() -> None:
    broke, spare = FakeProvider("a", script=[Q] * 5), FakeProvider("b")
    built, _ = chain(broke, spare)
    for _ in range(3):
        result, _ = await run(built)
        assert result.provider == "b"
    assert len(broke.calls) == 1 and "a" in built.paused


async def test_invalid_moves_on_and_empty_is_never_a_success() -> None:
    result, records = await run(chain(FakeProvider("a", script=[I]), FakeProvider("b", script=[E] * 9))[0])
    assert not result.ok and result.outcome is E
    assert [r.outcome for r in records] == [I, E, E, E]


async def test_timeouts_and_provider_bugs_are_classified() -> None:
    class Hanging:
        info = ProviderInfo(name="hang", description="", models=("h",))

        async def generate(self, request: ImageRequest) -> ProviderImage:
            await asyncio.sleep(30)
            raise AssertionError("unreachable")

        async def aclose(self) -> None: ...

    class Buggy(Hanging):
        info = ProviderInfo(name="buggy", description="", models=("b",))

        async def generate(self, request: ImageRequest) -> ProviderImage:
            raise KeyError("data")

    result, records = await run(chain(Hanging(), Buggy(), retries=0, timeout=0.05)[0])
    assert [(r.provider, r.outcome) for r in records] == [("hang", T), ("buggy", I)]
    assert "no answer within 0.05 s" in records[0].error and "KeyError" in records[1].error
    assert not result.ok


@pytest.mark.parametrize("retries", [0, 1, 3])
async def test_calls_per_provider_are_one_plus_retries(retries: int) -> None:
    provider = FakeProvider("a", script=[T] * 10)
    await run(chain(provider, retries=retries)[0])
    assert len(provider.calls) == retries + 1


async def test_a_request_can_name_its_providers_and_their_order() -> None:
    first, second = FakeProvider("first"), FakeProvider("second")
    built, _ = chain(first, second)
    assert (await built.generate(REQUEST, only=["second", "first"])).provider == "second"
    assert len(first.calls) == 0
    result = await built.generate(REQUEST, only=["elsewhere"])
    assert not result.ok and "none of the requested providers" in (result.error or "")
    assert len(first.calls) == len(second.calls) - 1 == 0
