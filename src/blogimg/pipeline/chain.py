"""The fallback chain: try providers in order, retrying each with backoff, and classify every call.

Before each call: the provider must not be paused or have its circuit open; the call's estimated
cost must fit the budget (the ledger row that reserves it is written before the call); and the
provider's rate limit must allow it. Then, per provider, by outcome class of the call:

- ``ok``: done.
- ``transient`` / ``empty``: retried up to ``retry_attempts`` times with exponential backoff and
  jitter; the server's Retry-After wins over the computed wait. A Retry-After longer than
  ``max_delay`` is not waited out: the next provider is tried instead.
- ``refused``: never retried on the same provider; the next provider only if
  ``fallback_on_refusal``, otherwise the image fails as refused.
- ``quota``: the provider is paused for the rest of the run; the next provider is tried.
- ``invalid``: our request was wrong for this provider; the next provider is tried.

Transient and empty results count against the provider's circuit breaker; an ``ok`` resets it.
Every call is in the ledger before it is made, so money spent is recorded even if we crash.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from blogimg.domain import AttemptRecord, ImageRequest, Outcome, ProviderImage
from blogimg.errors import BudgetExceededError, ProviderError
from blogimg.pipeline.breaker import CircuitBreaker
from blogimg.pipeline.rate_limit import RateLimiter
from blogimg.providers.base import ImageProvider

AttemptCallback = Callable[[AttemptRecord], Awaitable[None]]
_RETRYABLE = frozenset({Outcome.TRANSIENT, Outcome.EMPTY})
_UNHEALTHY = frozenset({Outcome.TRANSIENT, Outcome.EMPTY})


class Ledger(Protocol):
    """Where calls are recorded: a row before each call (which may refuse it), then its end."""

    async def open(self, provider: str, model: str | None, number: int, estimate: float | None) -> object:
        """Reserve the call; raise BudgetExceededError to forbid it."""
        ...

    async def close(self, handle: object, record: AttemptRecord) -> None: ...


class _NoLedger:
    async def open(self, provider: str, model: str | None, number: int, estimate: float | None) -> object:
        return None

    async def close(self, handle: object, record: AttemptRecord) -> None:
        return None


@dataclass(frozen=True, slots=True)
class ChainResult:
    """The end of one image's trip through the chain."""

    outcome: Outcome
    provider: str | None
    image: ProviderImage | None
    error: str | None
    attempts: tuple[AttemptRecord, ...] = field(default=())
    code: str = ""  #: the image's error code on failure: the outcome, or e.g. budget, download_refused

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK and self.image is not None


def backoff_delay(retry: int, base: float, max_delay: float, rng: random.Random) -> float:
    """Wait before retry number ``retry`` (0-based): base·2^retry, jittered ±50%, capped."""
    return min(max_delay, base * (2**retry)) * (0.5 + rng.random())


class ProviderChain:
    """Runs one request through ordered providers; shared by every job of a run."""

    def __init__(
        self,
        providers: Sequence[ImageProvider],
        *,
        retry_attempts: int = 2,
        retry_delay: float = 1.0,
        max_delay: float = 60.0,
        fallback_on_refusal: bool = False,
        timeout: float = 180.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        rate_limits: dict[str, float] | None = None,
        breaker_threshold: int = 5,
        breaker_cooldown: float = 30.0,
    ) -> None:
        self.providers = list(providers)
        self.retry_attempts = retry_attempts
        self.retry_delay = retry_delay
        self.max_delay = max_delay
        self.fallback_on_refusal = fallback_on_refusal
        self.timeout = timeout
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._clock = clock
        self.paused: dict[str, str] = {}  #: provider name → why it is paused for this run
        names = [provider.info.name for provider in self.providers]
        self.breakers = {name: CircuitBreaker(breaker_threshold, breaker_cooldown, clock) for name in names}
        self.limiters = {name: RateLimiter(limit, clock=clock, sleep=sleep)
                         for name, limit in (rate_limits or {}).items() if name in names}

    async def generate(self, request: ImageRequest, on_attempt: AttemptCallback | None = None,
                       ledger: Ledger | None = None, only: Sequence[str] | None = None) -> ChainResult:
        """Make one image; ``only`` restricts (and orders) the providers for this request."""
        ledger = ledger or _NoLedger()
        attempts: list[AttemptRecord] = []
        last_outcome, last_error, last_provider = Outcome.INVALID, "no provider is available", None
        last_code = last_outcome.value
        providers = self.providers
        if only:
            by_name = {provider.info.name: provider for provider in self.providers}
            providers = [by_name[name] for name in only if name in by_name]
            if not providers:
                last_error = (f"none of the requested providers ({', '.join(only)}) runs on this worker; "
                              f"it has {', '.join(by_name)}")
        for provider in providers:
            name = provider.info.name
            if name in self.paused:
                last_error = f"{name} paused: {self.paused[name]}"
                continue
            breaker = self.breakers[name]
            for retry in range(self.retry_attempts + 1):
                if not breaker.allow():
                    last_outcome, last_code = Outcome.TRANSIENT, Outcome.TRANSIENT.value
                    last_error = (f"{name}: circuit open after {breaker.failures} failures in a row; "
                                  f"next probe in {breaker.retry_in():.0f} s")
                    break
                model = provider.info.models[0] if provider.info.models else None
                try:
                    handle = await ledger.open(name, model, len(attempts) + 1, self._estimate(provider, request))
                except BudgetExceededError as refusal:
                    breaker.release()
                    last_outcome, last_code, last_error = Outcome.INVALID, "budget", f"{name}: not called: {refusal}"
                    break
                except BaseException:
                    breaker.release()  # no call went out; a held probe slot would shut the provider out
                    raise
                limiter = self.limiters.get(name)
                if limiter is not None:
                    await limiter.acquire()
                record, image, retry_after, code = await self._call(provider, request, len(attempts) + 1, model)
                await ledger.close(handle, record)
                attempts.append(record)
                last_provider = name
                if on_attempt is not None:
                    await on_attempt(record)
                self._update_breaker(breaker, record.outcome)
                if record.outcome is Outcome.OK:
                    return ChainResult(Outcome.OK, name, image, None, tuple(attempts), "")
                last_outcome, last_error, last_code = record.outcome, f"{name}: {record.error}", code
                if record.outcome is Outcome.QUOTA:
                    self.paused[name] = record.error or "quota or credentials"
                    break
                if record.outcome is Outcome.REFUSED:
                    if not self.fallback_on_refusal:
                        return ChainResult(Outcome.REFUSED, name, None, last_error, tuple(attempts), code)
                    break
                if record.outcome not in _RETRYABLE or retry == self.retry_attempts:
                    break
                if retry_after is not None and retry_after > self.max_delay:
                    break  # the server wants longer than we wait; another provider may serve now
                delay = retry_after if retry_after is not None else backoff_delay(
                    retry, self.retry_delay, self.max_delay, self._rng)
                await self._sleep(delay)
        return ChainResult(last_outcome, last_provider, None, last_error, tuple(attempts), last_code)

    @staticmethod
    def _update_breaker(breaker: CircuitBreaker, outcome: Outcome) -> None:
        if outcome is Outcome.OK:
            breaker.record_success()
        elif outcome in _UNHEALTHY:
            breaker.record_failure()
        else:
            breaker.release()  # a refusal or a bad request says nothing about the provider's health

    @staticmethod
    def _estimate(provider: ImageProvider, request: ImageRequest) -> float | None:
        estimate = getattr(provider, "estimate_cost", None)
        return estimate(request) if estimate is not None else None

    async def aclose(self) -> None:
        for provider in self.providers:
            await provider.aclose()

    async def _call(
        self, provider: ImageProvider, request: ImageRequest, number: int, model: str | None
    ) -> tuple[AttemptRecord, ProviderImage | None, float | None, str]:
        name = provider.info.name
        started = self._clock()
        image: ProviderImage | None = None
        status: int | None = None
        retry_after: float | None = None
        cost: float | None = 0.0
        code: str | None = None
        try:
            image = await asyncio.wait_for(provider.generate(request), self.timeout)
            model, cost = image.model, image.cost_usd
            outcome, error = (Outcome.OK, None) if image.data else (Outcome.EMPTY, "no image came back")
        except ProviderError as failure:
            outcome, error = failure.outcome, str(failure)
            status, retry_after, cost = failure.http_status, failure.retry_after, failure.cost_usd
            code = failure.code
        except TimeoutError:
            outcome, error = Outcome.TRANSIENT, f"no answer within {self.timeout:g} s"
        except (ConnectionError, OSError) as failure:
            outcome, error = Outcome.TRANSIENT, f"connection failed: {failure}"
        except Exception as failure:  # a provider bug must not take the worker down
            outcome, error = Outcome.INVALID, f"{type(failure).__name__}: {failure}"
        latency = round((self._clock() - started) * 1000)
        record = AttemptRecord(attempt=number, provider=name, model=model, outcome=outcome,
                               latency_ms=latency, cost_usd=cost, http_status=status,
                               error=error[:1000] if error else None)
        return record, image if outcome is Outcome.OK else None, retry_after, code or outcome.value
