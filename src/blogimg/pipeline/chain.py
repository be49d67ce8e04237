"""The fallback chain: try providers in order, retrying each with backoff, and classify every call.

One loop serves every kind of provider call: :class:`ProviderChain` makes images
(``provider.generate``), :class:`CaptionChain` writes alt text (``captioner.caption``). They
differ only in the call and in what counts as ``empty`` (no image bytes, no caption text).

Before each call: the provider must not be paused or have its circuit open; its pacing must let
the call through (:mod:`blogimg.pipeline.pacing`: concurrency and rate, lowered by 429s and shared
by every job); and the call's estimated cost must fit the budget (the ledger row that reserves it
is written just before the call, so a job waiting its turn holds no reservation). Then, per
provider, by outcome class of the call:

- ``ok``: done.
- ``transient`` / ``empty``: retried up to ``retry_attempts`` times with exponential backoff and
  jitter; the server's Retry-After wins over the computed wait. A Retry-After longer than
  ``max_delay`` is not waited out: the next provider is tried instead.
- rate limited (a ``transient`` 429, code ``rate_limited``): the provider is paced down, and the
  call retried with its own, larger allowance and longer waits (:mod:`blogimg.pipeline.retries`).
  When every provider called ended its turn rate limited, the failure says ``retry_later``: the
  worker gives the job back to the queue rather than failing it.
- ``refused``: never retried on the same provider; the next provider only if
  ``fallback_on_refusal``, otherwise the request fails as refused.
- ``quota``: the provider is paused for the rest of the run; the next provider is tried.
- ``invalid``: our request was wrong for this provider; the next provider is tried.

Transient and empty results count against the provider's circuit breaker; an ``ok`` resets it;
a 429 does neither: the provider answered, it only asked us to slow down.
Every call is in the ledger before it is made, so money spent is recorded even if we crash.
The end is a :class:`ChainSuccess` (a provider and its result) or a :class:`ChainFailure` (an
outcome, an error code and a message), never something in between.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Generic, Literal, Protocol, Self, TypeAlias, TypeVar

from blogimg.db.failures import describe
from blogimg.domain import AttemptRecord, ImageRequest, Outcome, ProviderImage
from blogimg.errors import BudgetExceededError, ProviderError
from blogimg.pipeline.breaker import CircuitBreaker
from blogimg.pipeline.pacing import ProviderPacing, is_rate_limited
from blogimg.pipeline.rate_limit import RateLimiter
from blogimg.pipeline.retries import RetryPolicy, RetryTurn, backoff_delay
from blogimg.providers.base import Caption, Captioner, CaptionRequest, ImageProvider, ProviderInfo
from blogimg.providers.http_errors import RATE_LIMITED

if TYPE_CHECKING:
    from blogimg.config import Settings

log = logging.getLogger(__name__)
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


class Member(Protocol):
    """What the loop needs of any provider: a name and models to record, and a way to close."""

    @property
    def info(self) -> ProviderInfo: ...

    async def aclose(self) -> None: ...


class Billed(Protocol):
    """What the loop needs of any successful call's result: the model that answered and the price."""

    @property
    def model(self) -> str: ...

    @property
    def cost_usd(self) -> float | None: ...


P = TypeVar("P", bound=Member)
Q = TypeVar("Q")
T = TypeVar("T", bound=Billed)


@dataclass(frozen=True, slots=True)
class ChainSuccess(Generic[T]):
    """The provider that answered, its result, and every call it took (failed ones included)."""

    provider: str
    result: T
    attempts: tuple[AttemptRecord, ...] = ()
    ok: ClassVar[Literal[True]] = True
    outcome: ClassVar[Outcome] = Outcome.OK


@dataclass(frozen=True, slots=True)
class ChainFailure:
    """Why nothing came back: the last outcome, the error code to record, and a message for people."""

    outcome: Outcome
    code: str  #: the error code on failure: the outcome, or e.g. budget, download_refused
    error: str
    provider: str | None = None  #: the last provider called; None when none was
    attempts: tuple[AttemptRecord, ...] = ()
    #: only rate limits stood in the way (every provider called ended its turn on 429s): the same
    #: request may well succeed later, so the job is worth queueing again rather than failing
    retry_later: bool = False
    ok: ClassVar[Literal[False]] = False

    def __post_init__(self) -> None:
        if self.outcome is Outcome.OK:
            raise ValueError("a ChainFailure cannot have the outcome ok")


#: The end of one request's trip through a chain; narrow it with ``isinstance(result, ChainSuccess)``.
ChainResult: TypeAlias = ChainSuccess[T] | ChainFailure


__all__ = ["CaptionChain", "ChainFailure", "ChainResult", "ChainSuccess", "FallbackChain", "Ledger",
           "ProviderChain", "backoff_delay"]


class FallbackChain(Generic[P, Q, T]):
    """Runs one request through ordered providers; shared by every job of a run.

    Subclasses say how a provider is called (:meth:`_invoke`) and when its answer is empty
    (:meth:`_is_empty`); everything else — retries, backoff, breakers, pauses, rate limits, the
    ledger and the budget — is this one loop.
    """

    empty_error: ClassVar[str] = "nothing came back"
    #: whether ``settings.rate_limits`` (calls per second per provider name) apply to this kind of call
    uses_rate_limits: ClassVar[bool] = True

    def __init__(
        self,
        providers: Sequence[P],
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
        rate_limit_retries: int = 6,
        rate_limit_delay: float = 5.0,
        rate_limit_max_delay: float = 120.0,
        rate_limit_recovery: int = 10,
    ) -> None:
        self.providers = list(providers)
        self.retry_attempts = retry_attempts
        self.retry_delay = retry_delay
        self.max_delay = max_delay
        self.fallback_on_refusal = fallback_on_refusal
        self.timeout = timeout
        self.retry_policy = RetryPolicy(retry_attempts, retry_delay, max_delay,
                                        rate_limit_retries, rate_limit_delay, rate_limit_max_delay)
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._clock = clock
        self.paused: dict[str, str] = {}  #: provider name → why it is paused for this run
        names = [provider.info.name for provider in self.providers]
        self.breakers = {name: CircuitBreaker(breaker_threshold, breaker_cooldown, clock) for name in names}
        #: per provider, shared by every job of the run: concurrency and rate, lowered by 429s
        self.pacing = {name: ProviderPacing(rate_limit=(rate_limits or {}).get(name), recovery=rate_limit_recovery,
                                            longest_hold=rate_limit_max_delay, clock=clock, sleep=sleep)
                       for name in names}
        #: the configured rate limits (``settings.rate_limits``), kept by each provider's pacing
        self.limiters: dict[str, RateLimiter] = {name: pacing.limiter for name, pacing in self.pacing.items()
                                                 if pacing.limiter is not None}

    @classmethod
    def from_settings(cls, providers: Sequence[P], settings: Settings, *,
                      sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                      rng: random.Random | None = None) -> Self:
        """A chain with the run's retry, timeout, breaker (and, for images, rate-limit) settings."""
        return cls(
            providers, retry_attempts=settings.retry_attempts, retry_delay=settings.retry_delay,
            max_delay=settings.retry_max_delay, fallback_on_refusal=settings.fallback_on_refusal,
            timeout=settings.provider_timeout,
            rate_limits=settings.rate_limits if cls.uses_rate_limits else None,
            breaker_threshold=settings.breaker_threshold, breaker_cooldown=settings.breaker_cooldown,
            rate_limit_retries=settings.rate_limit_retries, rate_limit_delay=settings.rate_limit_delay,
            rate_limit_max_delay=settings.rate_limit_max_delay, rate_limit_recovery=settings.rate_limit_recovery,
            sleep=sleep, rng=rng,
        )

    async def _invoke(self, provider: P, request: Q) -> T:
        """Make the one call; raise ProviderError with its outcome when it fails."""
        raise NotImplementedError

    def _is_empty(self, result: T) -> bool:
        """True when a call that raised nothing still brought nothing usable back."""
        raise NotImplementedError

    async def run(self, request: Q, *, on_attempt: AttemptCallback | None = None, ledger: Ledger | None = None,
                  only: Sequence[str] | None = None, first_attempt: int = 1) -> ChainSuccess[T] | ChainFailure:
        """Serve one request; ``only`` restricts (and orders) the providers for it.

        Calls are numbered from ``first_attempt`` in the ledger and the attempt records, so a
        second chain run for the same job (its caption) continues the job's numbering.
        """
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
        turns_rate_limited: list[bool] = []  #: per provider called: did its turn end on 429s?
        for provider in providers:
            name = provider.info.name
            if name in self.paused:
                last_error = f"{name} paused: {self.paused[name]}"
                continue
            breaker, pacing = self.breakers[name], self.pacing[name]
            turn = RetryTurn(self.retry_policy, self._rng)
            waited_until: float | None = None
            rate_limited: bool | None = None  #: how the turn's last call ended; None before its first
            while True:
                if not breaker.allow():
                    last_outcome, last_code = Outcome.TRANSIENT, Outcome.TRANSIENT.value
                    last_error = (f"{name}: circuit open after {breaker.failures} failures in a row; "
                                  f"next probe in {breaker.retry_in():.0f} s")
                    rate_limited = None if rate_limited is None else False
                    break
                try:
                    permit = await pacing.acquire(waited_until=waited_until)
                except BaseException:
                    breaker.release()  # no call went out; a held probe slot would shut the provider out
                    raise
                model = provider.info.models[0] if provider.info.models else None
                number = first_attempt + len(attempts)
                try:
                    handle = await ledger.open(name, model, number, self._estimate(provider, request))
                    record, result, retry_after, code = await self._call(provider, request, number, model)
                except BudgetExceededError as refusal:
                    breaker.release()
                    pacing.release(permit)
                    last_outcome, last_code, last_error = Outcome.INVALID, "budget", f"{name}: not called: {refusal}"
                    rate_limited = False
                    break
                except BaseException:
                    breaker.release()
                    pacing.release(permit)
                    raise
                rate_limited = is_rate_limited(record.outcome, record.http_status, code)
                pacing.release(permit, ok=result is not None, rate_limited=rate_limited, retry_after=retry_after)
                try:
                    await ledger.close(handle, record)
                except Exception as error:  # a paid result outweighs its ledger line: the row stays pending
                    if result is None:  # (its estimate counted) until JobLedger.settle closes it
                        raise
                    log.warning("%s: call %s succeeded but could not be recorded (%s); keeping its result",
                                name, number, describe(error))
                attempts.append(record)
                last_provider = name
                if on_attempt is not None:
                    await on_attempt(record)
                self._update_breaker(breaker, record.outcome, rate_limited=rate_limited)
                if result is not None:
                    return ChainSuccess(name, result, tuple(attempts))
                last_outcome, last_error = record.outcome, f"{name}: {record.error}"
                last_code = RATE_LIMITED if rate_limited else code
                if record.outcome is Outcome.QUOTA:
                    self.paused[name] = record.error or "quota or credentials"
                    break
                if record.outcome is Outcome.REFUSED:
                    if not self.fallback_on_refusal:
                        return ChainFailure(Outcome.REFUSED, code, last_error, name, tuple(attempts))
                    break
                if record.outcome not in _RETRYABLE:
                    break
                delay = turn.wait_after(rate_limited=rate_limited, retry_after=retry_after)
                if delay is None:
                    break  # out of retries, or the server wants longer than we wait: another provider may serve
                waited_until = self._clock() + delay
                await self._sleep(delay)
            if rate_limited is not None:
                turns_rate_limited.append(rate_limited)
        return ChainFailure(last_outcome, last_code, last_error, last_provider, tuple(attempts),
                            retry_later=bool(turns_rate_limited) and all(turns_rate_limited))

    @staticmethod
    def _update_breaker(breaker: CircuitBreaker, outcome: Outcome, *, rate_limited: bool = False) -> None:
        if outcome is Outcome.OK:
            breaker.record_success()
        elif outcome in _UNHEALTHY and not rate_limited:
            breaker.record_failure()
        else:
            # A refusal or a bad request says nothing about the provider's health; a 429 says it is
            # up and busy: pacing answers that, an open circuit would only shut out a working provider.
            breaker.release()

    @staticmethod
    def _estimate(provider: object, request: object) -> float | None:
        """The optional ``estimate_cost`` capability; without it the price is unknown (None)."""
        estimate: Callable[[object], float | None] | None = getattr(provider, "estimate_cost", None)
        return estimate(request) if estimate is not None else None

    async def aclose(self) -> None:
        for provider in self.providers:
            await provider.aclose()

    async def _call(
        self, provider: P, request: Q, number: int, model: str | None
    ) -> tuple[AttemptRecord, T | None, float | None, str]:
        """One call, classified: its ledger record, the result when ``ok``, Retry-After and error code."""
        name = provider.info.name
        started = self._clock()
        result: T | None = None
        status: int | None = None
        retry_after: float | None = None
        cost: float | None = 0.0
        code: str | None = None
        try:
            result = await asyncio.wait_for(self._invoke(provider, request), self.timeout)
            model, cost = result.model, result.cost_usd
            outcome, error = (Outcome.EMPTY, self.empty_error) if self._is_empty(result) else (Outcome.OK, None)
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
        return record, result if outcome is Outcome.OK else None, retry_after, code or outcome.value


class ProviderChain(FallbackChain[ImageProvider, ImageRequest, ProviderImage]):
    """Makes images: ``provider.generate(request)``; an answer without bytes is ``empty``."""

    empty_error = "no image came back"

    async def generate(self, request: ImageRequest, on_attempt: AttemptCallback | None = None,
                       ledger: Ledger | None = None, only: Sequence[str] | None = None,
                       ) -> ChainSuccess[ProviderImage] | ChainFailure:
        """Make one image; ``only`` restricts (and orders) the providers for this request."""
        return await self.run(request, on_attempt=on_attempt, ledger=ledger, only=only)

    async def _invoke(self, provider: ImageProvider, request: ImageRequest) -> ProviderImage:
        return await provider.generate(request)

    def _is_empty(self, result: ProviderImage) -> bool:
        return not result.data


class CaptionChain(FallbackChain[Captioner, CaptionRequest, Caption]):
    """Writes alt text: ``captioner.caption(request)``; blank text is ``empty``.

    Image rate limits (``settings.rate_limits``) count image calls, so captions do not use them.
    """

    empty_error = "the caption came back empty"
    uses_rate_limits = False

    async def caption(self, request: CaptionRequest, *, ledger: Ledger | None = None, first_attempt: int = 1,
                      on_attempt: AttemptCallback | None = None) -> ChainSuccess[Caption] | ChainFailure:
        """Caption one stored image; its calls are numbered from ``first_attempt`` (after the image's)."""
        return await self.run(request, on_attempt=on_attempt, ledger=ledger, first_attempt=first_attempt)

    async def _invoke(self, provider: Captioner, request: CaptionRequest) -> Caption:
        return await provider.caption(request)

    def _is_empty(self, result: Caption) -> bool:
        return not result.text.strip()
