"""Circuit breaker and rate limiter, on a fake clock: no real time passes in these tests."""

from __future__ import annotations

import random

from blogimg.domain import ImageRequest, Outcome, Size
from blogimg.pipeline.breaker import BreakerState, CircuitBreaker
from blogimg.pipeline.chain import ProviderChain
from blogimg.pipeline.rate_limit import RateLimiter
from blogimg.testing import FakeProvider

REQUEST = ImageRequest(prompt="a kite", size=Size(256, 256))


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_breaker_opens_after_threshold_and_lets_one_probe_through_after_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=3, cooldown=30, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and not breaker.allow()
    clock.now = 29.9
    assert not breaker.allow()
    clock.now = 30.0
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow() and not breaker.allow()  # exactly one probe
    breaker.record_failure()  # the probe failed: open for another cool-down
    assert breaker.state is BreakerState.OPEN and breaker.retry_in() == 30
    clock.now = 60.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED and breaker.allow() and breaker.allow()


async def test_chain_skips_an_open_circuit_and_probes_after_cooldown() -> None:
    clock = FakeClock()
    down = FakeProvider("down", script=lambda request, number: Outcome.TRANSIENT if number <= 4 else Outcome.OK)
    backup = FakeProvider("backup")
    chain = ProviderChain([down, backup], retry_attempts=1, retry_delay=0, sleep=clock.sleep,
                          clock=clock, rng=random.Random(1), breaker_threshold=4, breaker_cooldown=60)
    for _ in range(2):  # two images, two failed calls each: the circuit opens
        assert (await chain.generate(REQUEST)).provider == "backup"
    assert len(down.calls) == 4 and chain.breakers["down"].state is BreakerState.OPEN
    for _ in range(3):  # while open, "down" is not called at all
        assert (await chain.generate(REQUEST)).provider == "backup"
    assert len(down.calls) == 4
    clock.now += 60
    result = await chain.generate(REQUEST)  # the probe succeeds and closes the circuit
    assert result.provider == "down" and len(down.calls) == 5
    assert chain.breakers["down"].state is BreakerState.CLOSED


async def test_refusals_do_not_open_the_circuit() -> None:
    picky = FakeProvider("picky", script=lambda request, number: Outcome.REFUSED)
    chain = ProviderChain([picky], breaker_threshold=2, sleep=FakeClock().sleep)
    for _ in range(5):
        assert (await chain.generate(REQUEST)).outcome is Outcome.REFUSED
    assert len(picky.calls) == 5


async def test_rate_limit_spaces_calls_with_no_burst_at_start() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_minute=30, clock=clock, sleep=clock.sleep)
    starts = []
    for _ in range(6):
        await limiter.acquire()
        starts.append(clock.now)
    assert starts == [0, 2, 4, 6, 8, 10]
    # Never more than the limit in any 60-second window, the first one included.
    assert sum(1 for start in starts if start < 60) <= 30


async def test_chain_applies_each_providers_rate_limit() -> None:
    clock = FakeClock()
    limited = FakeProvider("limited")
    chain = ProviderChain([limited], sleep=clock.sleep, clock=clock, rate_limits={"limited": 12, "absent": 1})
    for _ in range(4):
        await chain.generate(REQUEST)
    assert clock.now == 15.0 and clock.sleeps == [5.0, 5.0, 5.0]
    assert "absent" not in chain.limiters
