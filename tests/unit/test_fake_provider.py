"""blogimg.testing.FakeProvider with a handler: one function answers every call, plain or async."""

from __future__ import annotations

import asyncio

import pytest

from blogimg.domain import ImageRequest, Outcome, ProviderImage, Size
from blogimg.errors import ProviderError
from blogimg.testing import FakeProvider

REQUEST = ImageRequest(prompt="a lighthouse", size=Size(64, 64))


async def test_a_plain_handler_answers_each_call_and_sees_its_number() -> None:
    def handler(request: ImageRequest, number: int) -> ProviderImage:
        if number == 2:
            raise ProviderError(Outcome.QUOTA, "out of credit", http_status=429)
        return ProviderImage(data=b"" if number == 3 else request.prompt.encode(), model="m", cost_usd=number / 100)

    fake = FakeProvider("f", handler=handler)
    assert await fake.generate(REQUEST) == ProviderImage(data=b"a lighthouse", model="m", cost_usd=0.01)
    with pytest.raises(ProviderError, match="out of credit"):
        await fake.generate(REQUEST)
    assert (await fake.generate(REQUEST)).data == b""
    assert [call.number for call in fake.calls] == [1, 2, 3]
    assert fake.outcomes() == [Outcome.OK, Outcome.QUOTA, Outcome.EMPTY]
    assert all(call.request is REQUEST for call in fake.calls)


async def test_an_async_handler_is_awaited_and_counted_in_flight() -> None:
    release = asyncio.Event()

    async def handler(request: ImageRequest, number: int) -> ProviderImage:
        await release.wait()
        return ProviderImage(data=b"png", model="m", cost_usd=0.0)

    fake = FakeProvider("f", handler=handler)
    calls = [asyncio.create_task(fake.generate(REQUEST)) for _ in range(3)]
    await asyncio.sleep(0)
    assert fake.in_flight == 3 and fake.outcomes() == [None, None, None]  # recorded on arrival, settled at the end
    release.set()
    assert [image.data for image in await asyncio.gather(*calls)] == [b"png"] * 3
    assert (fake.in_flight, fake.max_in_flight, fake.outcomes()) == (0, 3, [Outcome.OK] * 3)


async def test_other_exceptions_escape_and_leave_the_outcome_unknown() -> None:
    def handler(request: ImageRequest, number: int) -> ProviderImage:
        raise KeyError("data")

    fake = FakeProvider("f", handler=handler)
    with pytest.raises(KeyError):
        await fake.generate(REQUEST)
    assert fake.outcomes() == [None] and fake.in_flight == 0


def test_a_script_and_a_handler_together_are_refused() -> None:
    with pytest.raises(TypeError, match="not both"):
        FakeProvider("f", script=[Outcome.OK], handler=lambda request, number: ProviderImage(data=b"x", model="m", cost_usd=0.0))
