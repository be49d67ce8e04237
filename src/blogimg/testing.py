"""Test helpers shipped with blogimg, for our suite and for users' own tests.

:class:`FakeProvider` is a real :class:`~blogimg.providers.base.ImageProvider`: it returns real
PNG bytes (so imaging and storage run for real), and follows a script of outcomes and latencies,
recording every call and the most calls it ever had in flight at once. Given a ``handler``
instead of a script, it answers each call with that one function, as httpx's ``MockTransport``
does with requests.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

import pyvips

from blogimg.domain import ImageRequest, Outcome, ProviderImage
from blogimg.errors import ProviderError
from blogimg.providers.base import ProviderInfo

__all__ = ["FakeCall", "FakeProvider"]

Script = Sequence[Outcome] | Callable[[ImageRequest, int], Outcome]
Latency = float | Callable[[int], float]
#: (request, call number) -> the image, or raises ProviderError; may be ``async def``.
Handler = Callable[[ImageRequest, int], ProviderImage | Awaitable[ProviderImage]]


@dataclass(frozen=True, slots=True)
class FakeCall:
    """One call the fake received, and how it answered."""

    number: int  #: 1-based, in order of arrival
    request: ImageRequest
    #: with a handler: None until the call ends, and for good when the handler raised something
    #: other than ProviderError or was cancelled (a timeout)
    outcome: Outcome | None


class FakeProvider:
    """A scripted provider.

    ``script`` is either a list of outcomes used one per call (``OK`` once it runs out), or a
    function of (request, call number) returning the outcome. ``latency`` is seconds per call,
    or a function of the call number. ``image_size`` overrides the size of returned images so
    tests stay fast. ``retry_after`` is attached to transient failures.

    ``handler`` replaces the script when a test needs more than an outcome: one function, plain
    or ``async def``, of (request, call number) that returns the
    :class:`~blogimg.domain.ProviderImage` to answer with, or raises
    :class:`~blogimg.errors.ProviderError` (any other exception escapes as a provider bug
    would). It runs after ``latency``; ``model`` and ``cost_usd`` still name the provider's model
    and its price estimate, while the image the handler returns carries its own (``image_size``
    and ``retry_after`` only shape scripted answers). A script and a handler together are a
    TypeError. For example::

        def handler(request: ImageRequest, number: int) -> ProviderImage:
            if number == 1:
                raise ProviderError(Outcome.TRANSIENT, "busy", http_status=503)
            return ProviderImage(data=b"<html>", model="fake-1", cost_usd=0.02)

        provider = FakeProvider("garbage", handler=handler)

    Each call is recorded in ``calls`` when it arrives; with a handler its ``outcome`` is filled
    in when the call ends (``OK``, or ``EMPTY`` for an image without bytes, or the error's).
    """

    def __init__(
        self,
        name: str = "fake",
        *,
        script: Script = (),
        handler: Handler | None = None,
        latency: Latency = 0.0,
        model: str = "fake-1",
        cost_usd: float | None = 0.0,
        image_size: tuple[int, int] | None = (96, 64),
        retry_after: float | None = None,
        key_env_vars: tuple[str, ...] = (),
    ) -> None:
        if handler is not None and script:
            raise TypeError("FakeProvider takes a script or a handler, not both")
        self.info = ProviderInfo(name=name, description="Scripted fake for tests", models=(model,),
                                 key_env_vars=key_env_vars, offline=True)
        self.model = model
        self.cost_usd = cost_usd
        self.image_size = image_size
        self.retry_after = retry_after
        self._script = script
        self._handler = handler
        self._latency = latency
        self.calls: list[FakeCall] = []
        self.in_flight = 0
        self.max_in_flight = 0

    def __call__(self, settings: object | None = None) -> FakeProvider:
        # A FakeProvider instance is also its own registry factory.
        return self

    def outcomes(self) -> list[Outcome | None]:
        return [call.outcome for call in self.calls]

    def estimate_cost(self, request: ImageRequest) -> float | None:
        return self.cost_usd

    async def generate(self, request: ImageRequest) -> ProviderImage:
        number = len(self.calls) + 1
        # A script decides the outcome on arrival; a handler's is known when it has answered.
        scripted = None if self._handler is not None else self._next_outcome(request, number)
        call = FakeCall(number, request, scripted)
        self.calls.append(call)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            delay = self._latency(number) if callable(self._latency) else self._latency
            if delay:
                await asyncio.sleep(delay)
            if scripted is not None:
                return self._scripted_answer(request, scripted)
            assert self._handler is not None
            answer = self._handler(request, number)
            image = await answer if inspect.isawaitable(answer) else answer
        except ProviderError as error:
            if scripted is None:
                self._settle(call, error.outcome)
            raise
        finally:
            self.in_flight -= 1
        self._settle(call, Outcome.OK if image.data else Outcome.EMPTY)
        return image

    async def aclose(self) -> None:
        return None

    def _scripted_answer(self, request: ImageRequest, outcome: Outcome) -> ProviderImage:
        if outcome is Outcome.OK:
            return ProviderImage(data=self._image(request), model=self.model, cost_usd=self.cost_usd)
        if outcome is Outcome.EMPTY:
            return ProviderImage(data=b"", model=self.model, cost_usd=self.cost_usd)
        status = {Outcome.TRANSIENT: 503, Outcome.REFUSED: 400, Outcome.QUOTA: 429,
                  Outcome.INVALID: 400}[outcome]
        raise ProviderError(outcome, f"fake {outcome.value} failure", http_status=status,
                            retry_after=self.retry_after if outcome is Outcome.TRANSIENT else None,
                            cost_usd=0.0)

    def _settle(self, call: FakeCall, outcome: Outcome) -> None:
        for index, recorded in enumerate(self.calls):
            if recorded is call:
                self.calls[index] = replace(call, outcome=outcome)
                return

    def _next_outcome(self, request: ImageRequest, number: int) -> Outcome:
        if callable(self._script):
            return self._script(request, number)
        return self._script[number - 1] if number <= len(self._script) else Outcome.OK

    def _image(self, request: ImageRequest) -> bytes:
        width, height = self.image_size or (request.size.width, request.size.height)
        digest = hashlib.sha256(request.prompt.encode()).digest()
        base = pyvips.Image.black(width, height, bands=3).copy(interpretation="srgb")
        image = (base + list(digest[:3])).cast("uchar")
        # A second colour block gives smart crop and the dominant colour something to find.
        image = image.draw_rect(list(digest[3:6]), width // 2, 0, width - width // 2, height, fill=True)
        return image.pngsave_buffer(compression=1)
