"""The fallback chain: try providers in order, retrying each with backoff, and classify every call.

Per provider, by outcome class of the call:

- ``ok``: done.
- ``transient`` / ``empty``: retried up to ``retry_attempts`` times with exponential backoff and
  jitter; the server's Retry-After wins over the computed wait. A Retry-After longer than
  ``max_delay`` is not waited out: the next provider is tried instead.
- ``refused``: never retried on the same provider; the next provider only if
  ``fallback_on_refusal``, otherwise the image fails as refused.
- ``quota``: the provider is paused for the rest of the run; the next provider is tried.
- ``invalid``: our request was wrong for this provider; the next provider is tried.

Every call is reported through ``on_attempt`` before anything else happens, so the ledger has
each one even if the process dies a moment later.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from blogimg.domain import AttemptRecord, ImageRequest, Outcome, ProviderImage
from blogimg.errors import ProviderError
from blogimg.providers.base import ImageProvider

AttemptCallback = Callable[[AttemptRecord], Awaitable[None]]
_RETRYABLE = frozenset({Outcome.TRANSIENT, Outcome.EMPTY})


@dataclass(frozen=True, slots=True)
class ChainResult:
    """The end of one image's trip through the chain."""

    outcome: Outcome
    provider: str | None
    image: ProviderImage | None
    error: str | None
    attempts: tuple[AttemptRecord, ...] = field(default=())

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

    async def generate(self, request: ImageRequest, on_attempt: AttemptCallback | None = None) -> ChainResult:
        attempts: list[AttemptRecord] = []
        last_outcome, last_error, last_provider = Outcome.INVALID, "no provider is available", None
        for provider in self.providers:
            name = provider.info.name
            if name in self.paused:
                last_error = f"{name} paused: {self.paused[name]}"
                continue
            last_provider = name
            for retry in range(self.retry_attempts + 1):
                record, image, retry_after = await self._call(provider, request, len(attempts) + 1)
                attempts.append(record)
                if on_attempt is not None:
                    await on_attempt(record)
                if record.outcome is Outcome.OK:
                    return ChainResult(Outcome.OK, name, image, None, tuple(attempts))
                last_outcome, last_error = record.outcome, f"{name}: {record.error}"
                if record.outcome is Outcome.QUOTA:
                    self.paused[name] = record.error or "quota or credentials"
                    break
                if record.outcome is Outcome.REFUSED:
                    if not self.fallback_on_refusal:
                        return ChainResult(Outcome.REFUSED, name, None, last_error, tuple(attempts))
                    break
                if record.outcome not in _RETRYABLE or retry == self.retry_attempts:
                    break
                if retry_after is not None and retry_after > self.max_delay:
                    break  # the server wants longer than we wait; another provider may serve now
                delay = retry_after if retry_after is not None else backoff_delay(
                    retry, self.retry_delay, self.max_delay, self._rng)
                await self._sleep(delay)
        return ChainResult(last_outcome, last_provider, None, last_error, tuple(attempts))

    async def aclose(self) -> None:
        for provider in self.providers:
            await provider.aclose()

    async def _call(
        self, provider: ImageProvider, request: ImageRequest, number: int
    ) -> tuple[AttemptRecord, ProviderImage | None, float | None]:
        name = provider.info.name
        started = self._clock()
        image: ProviderImage | None = None
        status: int | None = None
        retry_after: float | None = None
        cost: float | None = 0.0
        model: str | None = provider.info.models[0] if provider.info.models else None
        try:
            image = await asyncio.wait_for(provider.generate(request), self.timeout)
            model, cost = image.model, image.cost_usd
            outcome, error = (Outcome.OK, None) if image.data else (Outcome.EMPTY, "no image came back")
        except ProviderError as failure:
            outcome, error = failure.outcome, str(failure)
            status, retry_after, cost = failure.http_status, failure.retry_after, failure.cost_usd
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
        return record, image if outcome is Outcome.OK else None, retry_after
