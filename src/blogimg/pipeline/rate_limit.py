"""Rate limits per provider, in images per minute, with no burst at the start.

Calls are spaced evenly: with a limit of R per minute, call k may start no earlier than
k·60/R seconds after the first. That never exceeds R calls in any 60-second window — also not in
the first one, where a token bucket would let a full bucket's burst through at once.

The pace may change while calls wait (:meth:`RateLimiter.set_rate`, used by
:mod:`blogimg.pipeline.pacing` when a provider answers 429), and a server's Retry-After can hold
every next start back (:meth:`RateLimiter.hold_until`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class RateLimiter:
    """Spaces calls ``60 / per_minute`` seconds apart; shared by every job of a run."""

    def __init__(self, per_minute: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        if per_minute <= 0:
            raise ValueError("a rate limit must be positive")
        self.interval = 60.0 / per_minute
        self._clock = clock
        self._sleep = sleep
        self._next_start: float | None = None

    @property
    def per_minute(self) -> float:
        return 60.0 / self.interval

    def set_rate(self, per_minute: float) -> None:
        """Change the pace; starts already reserved keep their times, the next ones use the new spacing."""
        if per_minute <= 0:
            raise ValueError("a rate limit must be positive")
        self.interval = 60.0 / per_minute

    def hold_until(self, moment: float) -> None:
        """No call starts before ``moment`` (on this limiter's clock)."""
        self._next_start = moment if self._next_start is None else max(self._next_start, moment)

    def reserve(self) -> float:
        """Claim the next start slot; returns how long to wait for it (no await, so no races)."""
        now = self._clock()
        start = now if self._next_start is None else max(now, self._next_start)
        self._next_start = start + self.interval
        return start - now

    async def acquire(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await self._sleep(delay)
