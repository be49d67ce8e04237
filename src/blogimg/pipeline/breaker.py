"""A circuit breaker per provider: stop calling a provider that keeps failing, probe it later.

closed ──N consecutive failures──► open ──cool-down passes──► half-open (one probe call)
  ▲                                                            │ probe ok → closed
  └────────────────────────────────────────────────────────────┘ probe fails → open again

While open (and while the probe is in flight) the chain skips the provider and falls back, so a
provider that is down costs one probe per cool-down instead of every image's retries.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """Counts consecutive failures of one provider; ``threshold`` 0 disables it."""

    def __init__(self, threshold: int = 5, cooldown: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self.failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._probing or self._clock() - self._opened_at >= self.cooldown:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allow(self) -> bool:
        """May a call go out now? In half-open state only the first caller gets to probe."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def retry_in(self) -> float:
        """Seconds until a probe is allowed (0 when closed or ready to probe)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self.cooldown - (self._clock() - self._opened_at))

    def record_success(self) -> None:
        self.failures = 0
        self._opened_at = None
        self._probing = False

    def record_failure(self) -> None:
        self.failures += 1
        if self._probing or (self.threshold and self.failures >= self.threshold):
            self._opened_at = self._clock()
        self._probing = False

    def release(self) -> None:
        """A probe that ended without saying anything about health (e.g. a refusal) frees the slot."""
        self._probing = False
