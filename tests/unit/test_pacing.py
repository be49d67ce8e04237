"""Pacing under 429s (AIMD), on a fake clock, and the chain's separate patience for rate limits."""

from __future__ import annotations

import asyncio
import random

import pytest

from blogimg.config import Settings
from blogimg.domain import ImageRequest, Outcome, ProviderImage, Size
from blogimg.errors import ProviderError
from blogimg.pipeline.breaker import BreakerState
from blogimg.pipeline.chain import ChainFailure, ChainSuccess, ProviderChain
from blogimg.pipeline.pacing import AdjustableGate, AimdLevel, ProviderPacing, is_rate_limited
from blogimg.pipeline.retries import RetryPolicy, RetryTurn
from blogimg.testing import FakeProvider
from tests.support import RecordingSleep

REQUEST = ImageRequest(prompt="a kite", size=Size(256, 256))
IMAGE = ProviderImage(data=b"png", model="fake-1", cost_usd=0.0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def too_many(retry_after: float | None = None) -> ProviderError:
    return ProviderError(Outcome.TRANSIENT, "HTTP 429: slow down", http_status=429, retry_after=retry_after,
                         code="rate_limited")


def scripted(*answers: str, retry_after: float | None = None) -> FakeProvider:
    """A provider answering "429", "503" or "ok" in turn (ok once the list runs out)."""
    queue = list(answers)

    def handler(request: ImageRequest, number: int) -> ProviderImage:
        answer = queue.pop(0) if queue else "ok"
        if answer == "429":
            raise too_many(retry_after)
        if answer == "503":
            raise ProviderError(Outcome.TRANSIENT, "HTTP 503: overloaded", http_status=503)
        return IMAGE

    return FakeProvider("a", handler=handler)


def chain(*providers: FakeProvider, **options) -> tuple[ProviderChain, RecordingSleep]:
    sleep = RecordingSleep()
    return ProviderChain(list(providers), retry_attempts=2, retry_delay=1.0, sleep=sleep, rng=random.Random(3),
                         **options), sleep


# --- AIMD ----------------------------------------------------------------------------------------


def test_a_configured_limit_halves_on_429s_and_climbs_back_a_tenth_per_success() -> None:
    level = AimdLevel(12.0, floor=1.0, recovery=10)
    level.decrease(in_use=99)  # a configured ceiling is the base, whatever was in use
    assert level.value == 6.0
    level.decrease(in_use=99)
    assert level.value == 3.0
    for expected in (4.2, 5.4, 6.6):
        level.increase()
        assert level.value == pytest.approx(expected)
    for _ in range(20):
        level.increase()
    assert level.value == 12.0  # never above the ceiling
    for _ in range(10):
        level.decrease(in_use=0)
    assert level.value == 1.0  # never below the floor


def test_without_a_ceiling_the_level_objected_to_is_the_top_and_reaching_it_lifts_the_limit() -> None:
    level = AimdLevel(None, floor=1.0, recovery=10)
    assert level.value is None
    level.increase()
    assert level.value is None  # successes do not invent a limit
    level.decrease(in_use=8)
    assert level.value == 4.0
    level.decrease(in_use=1)  # a second halving in the same episode halves the limit, not what is in use
    assert level.value == 2.0
    for _ in range(7):
        level.increase()
    assert level.value == pytest.approx(7.6)
    level.increase()
    assert level.value is None


def test_is_rate_limited_reads_the_code_or_a_plain_transient_429() -> None:
    assert is_rate_limited(Outcome.TRANSIENT, 429, "rate_limited")
    assert is_rate_limited(Outcome.TRANSIENT, 429, "transient")  # a plug-in that did not set the code
    assert not is_rate_limited(Outcome.QUOTA, 429, "quota")  # out of credit: not cured by slowing down
    assert not is_rate_limited(Outcome.TRANSIENT, 503, "transient")


# --- the gate --------------------------------------------------------------------------------------


async def test_the_gate_holds_callers_past_its_limit_first_come_first_served() -> None:
    gate = AdjustableGate()
    gate.set_limit(1)
    order: list[str] = []

    async def call(name: str) -> None:
        await gate.acquire()
        order.append(name)

    await gate.acquire()
    waiting = [asyncio.create_task(call(name)) for name in ("b", "c")]
    await asyncio.sleep(0)
    assert (gate.in_flight, gate.waiting, order) == (1, 2, [])
    gate.release()
    await asyncio.sleep(0)
    assert order == ["b"] and gate.in_flight == 1
    gate.set_limit(None)  # lifting the limit lets the rest through at once
    await asyncio.gather(*waiting)
    assert order == ["b", "c"] and gate.in_flight == 2


async def test_a_cancelled_waiter_leaves_no_slot_behind() -> None:
    gate = AdjustableGate()
    gate.set_limit(1)
    await gate.acquire()
    waiter = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert (gate.in_flight, gate.waiting) == (1, 0)
    # Handed a slot and cancelled before it ran: the slot goes back.
    handed = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0)
    gate.release()
    handed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handed
    assert gate.in_flight == 0
    await asyncio.wait_for(gate.acquire(), 1)


# --- one provider's pacing -------------------------------------------------------------------------


async def test_one_burst_of_429s_halves_concurrency_once_and_successes_lift_it_again() -> None:
    clock = FakeClock()
    pacing = ProviderPacing(recovery=10, clock=clock, sleep=clock.sleep)
    burst = [await pacing.acquire() for _ in range(4)]
    assert pacing.concurrency is None and pacing.gate.in_flight == 4
    for permit in burst:  # four calls in flight, four 429s: one decrease
        pacing.release(permit, rate_limited=True)
    assert (pacing.decreases, pacing.concurrency, pacing.lowest_concurrency) == (1, 2, 2)
    late = await pacing.acquire()
    pacing.release(late, rate_limited=True)  # a call that started after the decrease: the next halving
    assert (pacing.decreases, pacing.concurrency) == (2, 1)
    allowed: list[int | None] = []
    while pacing.concurrency is not None:
        pacing.release(await pacing.acquire(), ok=True)
        allowed.append(pacing.concurrency)
    # One more call per round of successes (1/allowed each), back to the four the provider objected
    # to; there the limit is lifted: the worker's own concurrency is the ceiling again.
    assert allowed == [2, 2, 2, 3, 3, 3, None] and pacing.lowest_concurrency == 1


async def test_a_configured_rate_is_halved_by_a_429_and_spaces_calls_accordingly() -> None:
    clock = FakeClock()
    pacing = ProviderPacing(rate_limit=60.0, clock=clock, sleep=clock.sleep)
    pacing.release(await pacing.acquire(), rate_limited=True)
    assert pacing.rate_per_minute == 30.0
    start = clock.now
    for _ in range(3):
        pacing.release(await pacing.acquire(), ok=False)
    # The slot reserved before the 429 (1 s on), then 2 s apart: half the rate.
    assert clock.now - start == pytest.approx(1.0 + 2.0 + 2.0)
    pacing.release(await pacing.acquire(), ok=True)
    assert pacing.rate_per_minute == pytest.approx(36.0)  # one success: a tenth of the ceiling back


async def test_without_a_configured_rate_a_429_paces_at_half_the_rate_seen_then_unpaces() -> None:
    clock = FakeClock()
    pacing = ProviderPacing(clock=clock, sleep=clock.sleep)
    for _ in range(9):  # 10 calls over 9 s: 66.7 a minute
        pacing.release(await pacing.acquire(), ok=True)
        clock.now += 1.0
    pacing.release(await pacing.acquire(), rate_limited=True)
    assert pacing.rate_per_minute == pytest.approx(10 * 60 / 9 / 2)
    assert pacing.limiter is not None
    for _ in range(10):
        pacing.release(await pacing.acquire(), ok=True)
    assert pacing.rate_per_minute is None and pacing.limiter is None


async def test_a_429_on_the_only_call_in_flight_does_not_hold_concurrency_at_one_for_good() -> None:
    clock = FakeClock()
    pacing = ProviderPacing(recovery=10, clock=clock, sleep=clock.sleep)
    pacing.release(await pacing.acquire(), rate_limited=True)  # one call in flight: the level objected to is 1
    assert (pacing.decreases, pacing.concurrency) == (1, 1)
    for _ in range(10):
        pacing.release(await pacing.acquire(), ok=True)
    assert pacing.concurrency is None  # back at the level objected to: the limit is lifted again


async def test_a_429_on_a_call_started_long_ago_does_not_pin_the_rate_at_the_slowest() -> None:
    clock = FakeClock()
    pacing = ProviderPacing(recovery=10, clock=clock, sleep=clock.sleep)
    slow = await pacing.acquire()
    clock.now += 90.0  # a slow image model: the 429 comes 90 s after the call started
    pacing.release(slow, rate_limited=True)
    assert pacing.rate_per_minute is not None  # paced: one call in the last 90 s, never below the slowest
    assert pacing.rate_per_minute >= 1.0
    for _ in range(10):
        pacing.release(await pacing.acquire(), ok=True)
    assert pacing.rate_per_minute is None and pacing.limiter is None


async def test_the_rate_objected_to_counts_the_calls_that_started_before_a_slow_refused_one() -> None:
    clock = FakeClock()
    pacing = ProviderPacing(recovery=10, clock=clock, sleep=clock.sleep)
    burst = []
    for _ in range(6):  # six calls a second apart, each running for minutes
        burst.append(await pacing.acquire())
        clock.now += 1.0
    clock.now = 95.0  # the last of them is refused 90 s after it started
    pacing.release(burst[-1], rate_limited=True)
    assert pacing.rate_per_minute == pytest.approx(6 * 60 / 95 / 2)  # six starts over the 95 s they span, halved


def test_every_lowered_level_climbs_back_in_a_bounded_number_of_successes() -> None:
    for ceiling, floor, in_use in ((None, 1.0, 1), (None, 1.0, 0.5), (None, 1.0, 3), (1.0, 1.0, 9), (1.5, 1.0, 9),
                                   (60.0, 1.0, 9)):
        level = AimdLevel(ceiling, floor=floor, recovery=10)
        for _ in range(5):
            level.decrease(in_use=in_use)
        for _ in range(10):
            level.increase()
        assert level.value == ceiling, (ceiling, floor, in_use)


def told_to_wait(retry_after: float) -> tuple[FakeClock, ProviderPacing]:
    clock = FakeClock()
    pacing = ProviderPacing(longest_hold=120.0, clock=clock, sleep=clock.sleep)
    return clock, pacing


async def test_retry_after_holds_every_jobs_next_call() -> None:
    clock, pacing = told_to_wait(20.0)
    pacing.release(await pacing.acquire(), rate_limited=True, retry_after=20.0)
    await pacing.acquire()  # another job: held until the provider's time
    assert clock.sleeps == [20.0]


async def test_the_job_told_to_wait_does_not_wait_twice() -> None:
    clock, pacing = told_to_wait(20.0)
    pacing.release(await pacing.acquire(), rate_limited=True, retry_after=20.0)
    clock.now = told = 20.0  # it slept its Retry-After itself (the chain's own wait)
    await pacing.acquire(waited_until=told)
    assert clock.sleeps == []


async def test_a_hold_is_capped_at_the_longest_wait() -> None:
    clock, pacing = told_to_wait(3600.0)
    pacing.release(await pacing.acquire(), rate_limited=True, retry_after=3600.0)
    await pacing.acquire()
    assert clock.now == 120.0


# --- the chain -----------------------------------------------------------------------------------


async def test_429s_and_failures_have_separate_allowances() -> None:
    provider = scripted("429", "503", "429", "503", "429", "ok")
    built, sleep = chain(provider, rate_limit_retries=6, rate_limit_delay=5.0)
    result = await built.generate(REQUEST)
    # Three failures would end a turn of 1 + 2 retries; with the 429s counted apart, this one succeeds.
    assert isinstance(result, ChainSuccess) and len(provider.calls) == 6
    assert built.pacing["a"].decreases == 3
    assert sum(wait for wait in sleep.delays if wait >= 2.5) >= 3 * 2.5  # each 429 waited ≥ half its 5 s base


def test_a_turn_waits_longer_after_429s_and_counts_them_apart() -> None:
    policy = RetryPolicy(retry_attempts=1, retry_delay=1.0, max_delay=60.0, rate_limit_retries=3,
                         rate_limit_delay=5.0, rate_limit_max_delay=120.0)
    turn = RetryTurn(policy, random.Random(5))
    after_429s = [turn.wait_after(rate_limited=True, retry_after=None) for _ in range(3)]
    assert [wait is not None and 0.5 * 5 * 2**n <= wait <= 1.5 * 5 * 2**n for n, wait in enumerate(after_429s)] == [
        True] * 3
    first_failure = turn.wait_after(rate_limited=False, retry_after=None)
    assert first_failure is not None and 0.5 <= first_failure <= 1.5  # the failures' own count starts at one
    assert turn.wait_after(rate_limited=False, retry_after=None) is None  # out of failure retries
    assert turn.wait_after(rate_limited=True, retry_after=None) is None  # and of 429 retries
    fresh = RetryTurn(policy, random.Random(5))
    assert fresh.wait_after(rate_limited=True, retry_after=90.0) == 90.0  # a 429's Retry-After, within its cap
    assert fresh.wait_after(rate_limited=False, retry_after=90.0) is None  # a failure's cap is 60 s


async def test_only_rate_limits_ending_a_chain_say_retry_later() -> None:
    limited = scripted(*["429"] * 10)
    built, _ = chain(limited, rate_limit_retries=3)
    result = await built.generate(REQUEST)
    assert isinstance(result, ChainFailure) and len(limited.calls) == 4
    assert (result.outcome, result.code, result.retry_later) == (Outcome.TRANSIENT, "rate_limited", True)
    broken, limited = scripted(*["503"] * 10), scripted(*["429"] * 10)
    limited.info = FakeProvider("b").info
    built, _ = chain(broken, limited, rate_limit_retries=1)
    result = await built.generate(REQUEST)
    assert isinstance(result, ChainFailure) and result.code == "rate_limited"
    assert not result.retry_later  # provider a is failing, not busy: queueing again would not help it


async def test_a_429s_retry_after_is_honoured_up_to_its_own_cap() -> None:
    built, sleep = chain(scripted("429", retry_after=90.0), rate_limit_max_delay=120.0, max_delay=60.0)
    assert isinstance(await built.generate(REQUEST), ChainSuccess)
    assert sleep.delays == [90.0]  # longer than a failure's longest wait, within a 429's
    provider = scripted("429", retry_after=600.0)
    built, sleep = chain(provider, rate_limit_max_delay=120.0)
    result = await built.generate(REQUEST)
    assert isinstance(result, ChainFailure) and result.retry_later and len(provider.calls) == 1
    assert sleep.delays == []


async def test_429s_never_open_the_circuit() -> None:
    provider = scripted(*["429"] * 20)
    built, _ = chain(provider, breaker_threshold=2, rate_limit_retries=9)
    result = await built.generate(REQUEST)
    assert isinstance(result, ChainFailure) and len(provider.calls) == 10
    assert built.breakers["a"].state is BreakerState.CLOSED and built.breakers["a"].failures == 0


async def test_a_plug_ins_plain_transient_429_is_a_rate_limit_too() -> None:
    def handler(request: ImageRequest, number: int) -> ProviderImage:
        if number == 1:
            raise ProviderError(Outcome.TRANSIENT, "HTTP 429", http_status=429)
        return IMAGE

    built, sleep = chain(FakeProvider("a", handler=handler), rate_limit_delay=5.0)
    assert isinstance(await built.generate(REQUEST), ChainSuccess)
    assert sleep.delays[0] >= 2.5 and built.pacing["a"].decreases == 1


async def test_many_jobs_against_a_provider_that_serves_two_at_a_time_all_succeed() -> None:
    in_flight = 0
    refused = 0

    async def two_at_a_time(request: ImageRequest, number: int) -> ProviderImage:
        nonlocal in_flight, refused
        in_flight += 1
        try:
            await asyncio.sleep(0.002)  # the server counts what is in flight while it works
            if in_flight > 2:
                refused += 1
                raise too_many()
            return IMAGE
        finally:
            in_flight -= 1

    provider = FakeProvider("a", handler=two_at_a_time)
    built, _ = chain(provider, rate_limit_retries=6)
    results = await asyncio.gather(*(built.generate(REQUEST) for _ in range(24)))
    assert all(isinstance(result, ChainSuccess) for result in results)
    pacing = built.pacing["a"]
    assert provider.max_in_flight == 24  # the first burst went out unpaced: nothing had objected yet
    assert pacing.lowest_concurrency is not None and pacing.lowest_concurrency <= 2
    assert refused < 2 * 24  # halving found the provider's two slots quickly: not a 429 storm per job


def test_chains_from_settings_take_the_rate_limit_settings() -> None:
    settings = Settings(rate_limit_retries=9, rate_limit_delay=2.0, rate_limit_max_delay=30.0, rate_limit_recovery=4,
                        rate_limits={"a": 6.0})
    built = ProviderChain.from_settings([FakeProvider("a"), FakeProvider("b")], settings)
    policy = built.retry_policy
    assert (policy.rate_limit_retries, policy.rate_limit_delay, policy.rate_limit_max_delay) == (9, 2.0, 30.0)
    assert built.pacing["a"].rate_per_minute == 6.0 and built.pacing["b"].rate_per_minute is None
    assert built.pacing["a"].limiter is built.limiters["a"]
    assert built.pacing["a"].longest_hold == 30.0
