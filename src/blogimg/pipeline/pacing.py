"""Pacing per provider: when a provider answers 429, every job slows down together, then speeds up again.

A 429 means "slow down", not "broken". The chain keeps one :class:`ProviderPacing` per provider,
shared by every job of the process, so one job's 429 slows all of them. It paces two things:

- concurrency: how many calls to the provider may be in flight at once (an :class:`AdjustableGate`);
- rate: how far apart calls start (a :class:`~blogimg.pipeline.rate_limit.RateLimiter`).

Both follow AIMD, as TCP's congestion window does (:class:`AimdLevel`): a 429 halves them
(multiplicative decrease; never below one call at a time, or one call a minute), and successes
add back a fixed step (additive increase) up to the ceiling: concurrency one call per round of
successes (a success adds 1/allowed, TCP's rule), the rate a ``recovery``-th of its ceiling per
success. The rate's ceiling is the configured one (``BLOGIMG_RATE_LIMITS``). Where nothing is
configured — concurrency always, since the worker's own concurrency is its real ceiling — the
ceiling is the level the provider objected to, and climbing back to it lifts the limit
altogether: a provider is never held below what it was serving before it complained.

Calls in flight together usually get their 429s together: only a call that started after the
last decrease lowers the limits again, so one burst costs one halving, not one per call.

A 429's Retry-After is the provider's own word on when to call again: it holds every job's next
call to that provider, not only the one that was told.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from blogimg.domain import Outcome
from blogimg.pipeline.rate_limit import RateLimiter
from blogimg.providers.http_errors import RATE_LIMITED

#: The slowest pace a 429 can bring a provider down to, in calls per minute.
SLOWEST_RATE = 1.0
#: Call starts remembered to estimate the rate a provider objected to.
_REMEMBERED_STARTS = 10
#: A rate is estimated over at least this many seconds, so a burst does not read as thousands a minute.
_SHORTEST_SPAN = 1.0


def is_rate_limited(outcome: Outcome, http_status: int | None, code: str | None) -> bool:
    """Whether a call was refused for going too fast: the providers' code, or a transient 429 from a plug-in."""
    return code == RATE_LIMITED or (outcome is Outcome.TRANSIENT and http_status == 429)


class AdjustableGate:
    """A semaphore whose size can change while callers wait; ``limit`` None lets everyone through.

    Waiters are served first come, first served, so a job that was told to slow down does not
    starve behind newcomers. A slot is handed straight to the next waiter on release.
    """

    def __init__(self) -> None:
        self.limit: int | None = None
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return sum(1 for waiter in self._waiters if not waiter.done())

    async def acquire(self) -> None:
        if not self._waiters and self._has_room():
            self.in_flight += 1
            return
        # A future per waiter, made on the running loop: nothing here is bound to one event loop.
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot just as we were cancelled: pass it on
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        self.in_flight -= 1
        self._hand_over()

    def set_limit(self, limit: int | None) -> None:
        self.limit = limit
        self._hand_over()

    def _has_room(self) -> bool:
        return self.limit is None or self.in_flight < self.limit

    def _hand_over(self) -> None:
        while self._waiters and self._has_room():
            waiter = self._waiters.popleft()
            if not waiter.done():  # a cancelled waiter has left
                waiter.set_result(None)
                self.in_flight += 1


class AimdLevel:
    """One limit under additive increase, multiplicative decrease; ``value`` None means no limit."""

    def __init__(self, ceiling: float | None, *, floor: float, recovery: int) -> None:
        if recovery < 1:
            raise ValueError("recovery must be at least one success")
        self.ceiling = ceiling
        self.floor = floor if ceiling is None else min(floor, ceiling)
        self.recovery = recovery
        self.value = ceiling
        self._top = ceiling  #: where additive increase stops: the ceiling, or the level objected to

    def decrease(self, in_use: float) -> None:
        """Halve; ``in_use`` is the level actually used, the base when there is no limit yet."""
        if self.value is None:
            self._top = max(in_use, self.floor)
        base = self.value if self.value is not None else self._top
        assert base is not None
        self.value = max(self.floor, base / 2)

    def increase(self, step: float | None = None) -> None:
        """One step back up (by default a ``recovery``-th of the top); reaching the top restores the
        ceiling (None: no limit at all).

        A level the floor kept at its top (a 429 with one call in flight, or at the slowest rate) is
        still a lowered limit: the next step reaches the top and restores the ceiling, so no 429
        leaves a limit behind for good."""
        if self.value is None or self._top is None:
            return
        self.value += step if step is not None else self._top / self.recovery
        if self.value >= self._top:
            self.value = self.ceiling


@dataclass(frozen=True, slots=True)
class Permit:
    """A call let through: how many decreases had happened when it started, and when it started."""

    generation: int
    started: float


class ProviderPacing:
    """The concurrency and rate of calls to one provider, shared by every job of a process."""

    def __init__(
        self,
        *,
        rate_limit: float | None = None,
        recovery: int = 10,
        longest_hold: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock, self._sleep = clock, sleep
        self.longest_hold = longest_hold
        self.gate = AdjustableGate()
        self.limiter = RateLimiter(rate_limit, clock=clock, sleep=sleep) if rate_limit else None
        self._concurrency = AimdLevel(None, floor=1, recovery=recovery)
        self._rate = AimdLevel(rate_limit, floor=SLOWEST_RATE, recovery=recovery)
        self._not_before = float("-inf")
        self._starts: deque[float] = deque(maxlen=_REMEMBERED_STARTS)
        self.decreases = 0  #: times a 429 lowered the limits
        self.lowest_concurrency: int | None = None  #: the lowest concurrency ever allowed (None: never limited)

    @property
    def concurrency(self) -> int | None:
        """Calls allowed in flight at once now; None when there is no limit."""
        return self.gate.limit

    @property
    def rate_per_minute(self) -> float | None:
        """Call starts allowed per minute now; None when there is no limit."""
        return self._rate.value

    async def acquire(self, *, waited_until: float | None = None) -> Permit:
        """Wait for a slot and for the call's start time; ``waited_until`` is when the caller's own
        wait (its Retry-After) ended, so a hold it has already waited out is not waited again."""
        await self.gate.acquire()
        try:
            now = self._clock()
            hold = self._not_before if waited_until is None or self._not_before > waited_until else now
            if self.limiter is not None:
                self.limiter.hold_until(hold)
                wait = self.limiter.reserve()
            else:
                wait = hold - now
            if wait > 0:
                await self._sleep(wait)
        except BaseException:
            self.gate.release()
            raise
        started = self._clock()
        self._starts.append(started)
        return Permit(self.decreases, started)

    def release(self, permit: Permit, *, ok: bool = False, rate_limited: bool = False,
                retry_after: float | None = None) -> None:
        """The call ended: learn from it (a 429 slows down, a success speeds up) and free its slot."""
        try:
            if rate_limited:
                self._slow_down(permit, retry_after)
            elif ok:
                self._speed_up()
        finally:
            self.gate.release()

    def _slow_down(self, permit: Permit, retry_after: float | None) -> None:
        now = self._clock()
        if retry_after is not None:
            self._not_before = max(self._not_before, now + min(retry_after, self.longest_hold))
        if permit.generation != self.decreases:
            return  # it started before the last decrease, which has already answered its burst
        self.decreases += 1
        self._concurrency.decrease(self.gate.in_flight)  # this call still holds its slot: it counts
        self._rate.decrease(self._recent_rate(permit.started, now))
        self._apply()

    def _speed_up(self) -> None:
        allowed = self._concurrency.value
        # Concurrency creeps up by one call per round of successes: a small number, where a tenth of
        # the level objected to (a whole worker's burst) would climb back into the 429s at once.
        self._concurrency.increase(None if allowed is None else 1 / allowed)
        self._rate.increase()
        self._apply()

    def _apply(self) -> None:
        allowed = self._concurrency.value
        self.gate.set_limit(None if allowed is None else max(1, int(allowed)))
        if self.gate.limit is not None:
            self.lowest_concurrency = min(self.lowest_concurrency or self.gate.limit, self.gate.limit)
        rate = self._rate.value
        if rate is None:
            self.limiter = None
        elif self.limiter is None:
            self.limiter = RateLimiter(rate, clock=self._clock, sleep=self._sleep)
        else:
            self.limiter.set_rate(rate)

    def _recent_rate(self, started: float, now: float) -> float:
        """Calls per minute when a call that ``started`` was refused: the starts remembered from the
        minute before it started up to ``now``, over the time they span.

        The refused call itself always counts, however long it ran (a slow image model answers 429
        long after the call started), so the estimate is never "no calls at all"."""
        recent = [start for start in self._starts if start >= started - 60.0]
        if not recent or recent[0] > started:  # its own start has been pushed out of memory
            recent.insert(0, started)
        return len(recent) * 60.0 / max(now - recent[0], _SHORTEST_SPAN)
