"""How long one provider's turn at a request waits before each retry, and when it gives up.

Failures (5xx, timeouts, empty answers) and rate limits (429) are counted apart, each against its
own allowance: a 429 says the provider works but wants fewer calls, so it gets more retries and
longer waits (``rate_limit_*`` settings) than a failure, and a burst of 429s never uses up the
retries a real failure needs. A server's Retry-After wins over the computed backoff, up to that
kind's longest wait; beyond it the turn ends at once (another provider may serve now).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


def backoff_delay(retry: int, base: float, max_delay: float, rng: random.Random) -> float:
    """Wait before retry number ``retry`` (0-based): base·2^retry, jittered ±50%, capped."""
    return min(max_delay, base * (2**retry)) * (0.5 + rng.random())


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The allowances and waits of both kinds, as the chain was configured."""

    retry_attempts: int = 2
    retry_delay: float = 1.0
    max_delay: float = 60.0
    rate_limit_retries: int = 6
    rate_limit_delay: float = 5.0
    rate_limit_max_delay: float = 120.0


class RetryTurn:
    """One provider's turn at one request: the retries it has used of each kind."""

    def __init__(self, policy: RetryPolicy, rng: random.Random) -> None:
        self.policy, self._rng = policy, rng
        self.failures = 0
        self.rate_limits = 0

    def wait_after(self, *, rate_limited: bool, retry_after: float | None) -> float | None:
        """Seconds to wait before the next call, or None when this turn is over."""
        policy = self.policy
        if rate_limited:
            self.rate_limits += 1
            used, allowed = self.rate_limits, policy.rate_limit_retries
            base, longest = policy.rate_limit_delay, policy.rate_limit_max_delay
        else:
            self.failures += 1
            used, allowed = self.failures, policy.retry_attempts
            base, longest = policy.retry_delay, policy.max_delay
        if used > allowed:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= longest else None
        return backoff_delay(used - 1, base, longest, self._rng)
