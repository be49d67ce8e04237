"""The fallback chain with FakeProvider: retries, backoff, fallback, refusals, pauses."""

from __future__ import annotations

import asyncio
import random

import pytest

from blogimg.domain import AttemptRecord, ImageRequest, Outcome, ProviderImage, Size
from blogimg.errors import ProviderError
from blogimg.pipeline.chain import (
    CaptionChain,
    ChainFailure,
    ChainResult,
    ChainSuccess,
    ProviderChain,
    backoff_delay,
)
from blogimg.providers.base import Caption, CaptionRequest, ProviderInfo
from blogimg.testing import FakeProvider
from tests.support import RecordingSleep

T, OK, R, Q, I, E = Outcome.TRANSIENT, Outcome.OK, Outcome.REFUSED, Outcome.QUOTA, Outcome.INVALID, Outcome.EMPTY  # noqa: E741 (short names keep scripts readable)
REQUEST = ImageRequest(prompt="a lighthouse", size=Size(256, 256))


def chain(*providers: FakeProvider, retries: int = 2, **options) -> tuple[ProviderChain, RecordingSleep]:
    sleep = RecordingSleep()
    built = ProviderChain(list(providers), retry_attempts=retries, retry_delay=1.0, sleep=sleep,
                          rng=random.Random(7), **options)
    return built, sleep


async def run(built: ProviderChain) -> tuple[ChainResult[ProviderImage], list[AttemptRecord]]:
    records: list[AttemptRecord] = []

    async def record(attempt: AttemptRecord) -> None:
        records.append(attempt)

    return await built.generate(REQUEST, on_attempt=record), records


async def test_transient_failures_are_retried_then_succeed() -> None:
    provider = FakeProvider("a", script=[T, T, OK])
    result, records = await run(chain(provider)[0])
    assert isinstance(result, ChainSuccess) and result.provider == "a"
    assert result.result.data and result.attempts == tuple(records)
    assert [r.outcome for r in records] == [T, T, OK]
    assert [r.attempt for r in records] == [1, 2, 3]
    assert len(provider.calls) == 3


async def test_fallback_after_retries_are_exhausted() -> None:
    first, second = FakeProvider("a", script=[T] * 10), FakeProvider("b")
    built, sleep = chain(first, second, retries=2)
    result, records = await run(built)
    assert isinstance(result, ChainSuccess) and result.provider == "b"
    assert [(r.provider, r.outcome) for r in records] == [("a", T), ("a", T), ("a", T), ("b", OK)]
    assert len(sleep.delays) == 2  # between the three calls to a; none before falling back


async def test_backoff_grows_exponentially_with_bounded_jitter() -> None:
    rng = random.Random(1)
    for retry in range(5):
        delay = backoff_delay(retry, 1.0, 60.0, rng)
        assert 0.5 * 2**retry <= delay <= 1.5 * 2**retry
    assert backoff_delay(20, 1.0, 60.0, rng) <= 90.0
    built, sleep = chain(FakeProvider("a", script=[T, T, T]), retries=2)
    await run(built)
    assert 0.5 <= sleep.delays[0] <= 1.5 and 1.0 <= sleep.delays[1] <= 3.0


async def test_retry_after_wins_and_an_overlong_one_moves_on() -> None:
    built, sleep = chain(FakeProvider("a", script=[T, OK], retry_after=7.5))
    result, _ = await run(built)
    assert isinstance(result, ChainSuccess) and sleep.delays == [7.5]
    slow, spare = FakeProvider("a", script=[T], retry_after=3600), FakeProvider("b")
    built, sleep = chain(slow, spare, max_delay=60)
    result, records = await run(built)
    assert result.provider == "b" and sleep.delays == [] and len(slow.calls) == 1


async def test_refusal_is_never_retried_and_falls_back_only_when_allowed() -> None:
    refuser, spare = FakeProvider("a", script=[R] * 5), FakeProvider("b")
    result, records = await run(chain(refuser, spare)[0])
    assert isinstance(result, ChainFailure) and (result.outcome, result.code, result.provider) == (R, "refused", "a")
    assert len(refuser.calls) == 1 and spare.calls == []
    refuser, spare = FakeProvider("a", script=[R] * 5), FakeProvider("b")
    result, _ = await run(chain(refuser, spare, fallback_on_refusal=True)[0])
    assert isinstance(result, ChainSuccess) and result.provider == "b" and len(refuser.calls) == 1


async def test_quota_pauses_the_provider_for_the_rest_of_the_run() -> None:
    broke, spare = FakeProvider("a", script=[Q] * 5), FakeProvider("b")
    built, _ = chain(broke, spare)
    for _ in range(3):
        result, _ = await run(built)
        assert result.provider == "b"
    assert len(broke.calls) == 1 and "a" in built.paused


async def test_invalid_moves_on_and_empty_is_never_a_success() -> None:
    result, records = await run(chain(FakeProvider("a", script=[I]), FakeProvider("b", script=[E] * 9))[0])
    assert isinstance(result, ChainFailure) and (result.outcome, result.code) == (E, "empty")
    assert result.error == "b: no image came back"
    assert [r.outcome for r in records] == [I, E, E, E]


async def test_timeouts_and_provider_bugs_are_classified() -> None:
    async def hang(request: ImageRequest, number: int) -> ProviderImage:
        await asyncio.sleep(30)
        raise AssertionError("unreachable")

    def bug(request: ImageRequest, number: int) -> ProviderImage:
        raise KeyError("data")

    hanging, buggy = FakeProvider("hang", model="h", handler=hang), FakeProvider("buggy", model="b", handler=bug)
    result, records = await run(chain(hanging, buggy, retries=0, timeout=0.05)[0])
    assert [(r.provider, r.outcome) for r in records] == [("hang", T), ("buggy", I)]
    assert "no answer within 0.05 s" in records[0].error and "KeyError" in records[1].error
    assert isinstance(result, ChainFailure)


@pytest.mark.parametrize("retries", [0, 1, 3])
async def test_calls_per_provider_are_one_plus_retries(retries: int) -> None:
    provider = FakeProvider("a", script=[T] * 10)
    await run(chain(provider, retries=retries)[0])
    assert len(provider.calls) == retries + 1


async def test_a_request_can_name_its_providers_and_their_order() -> None:
    first, second = FakeProvider("first"), FakeProvider("second")
    built, _ = chain(first, second)
    assert (await built.generate(REQUEST, only=["second", "first"])).provider == "second"
    assert len(first.calls) == 0
    result = await built.generate(REQUEST, only=["elsewhere"])
    assert isinstance(result, ChainFailure) and "none of the requested providers" in result.error
    assert result.provider is None and result.attempts == ()
    assert len(first.calls) == len(second.calls) - 1 == 0


def test_results_cannot_be_half_filled() -> None:
    with pytest.raises(ValueError, match="cannot have the outcome ok"):
        ChainFailure(OK, "ok", "nothing wrong")
    success = ChainSuccess("a", ProviderImage(data=b"png", model="m", cost_usd=0.0))
    assert (success.ok, success.outcome) == (True, OK) and not ChainFailure(T, "transient", "busy").ok
    with pytest.raises(AttributeError):
        success.provider = "b"  # type: ignore[misc]


class ScriptedCaptioner:
    """A captioner answering from a list: a text, or an outcome to raise."""

    def __init__(self, *answers: str | Outcome, retry_after: float | None = None) -> None:
        self.info = ProviderInfo(name="vision", description="scripted", models=("v-1",))
        self.answers, self.retry_after = list(answers), retry_after
        self.calls: list[CaptionRequest] = []

    async def caption(self, request: CaptionRequest) -> Caption:
        self.calls.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Outcome):
            raise ProviderError(answer, f"scripted {answer}", retry_after=self.retry_after, cost_usd=0.001)
        return Caption(answer, "v-1", 0.002)

    async def aclose(self) -> None:
        return None


class ListLedger:
    def __init__(self) -> None:
        self.opened: list[tuple[str, str | None, int, float | None]] = []
        self.closed: list[AttemptRecord] = []

    async def open(self, provider: str, model: str | None, number: int, estimate: float | None) -> int:
        self.opened.append((provider, model, number, estimate))
        return len(self.opened)

    async def close(self, handle: object, record: AttemptRecord) -> None:
        self.closed.append(record)


CAPTION_REQUEST = CaptionRequest(image=b"webp", mime_type="image/webp", title="Tides")


async def test_captions_run_the_same_loop_numbered_after_the_image() -> None:
    captioner = ScriptedCaptioner(T, "  ", "The sea at low tide.", retry_after=0.5)
    sleep = RecordingSleep()
    ledger = ListLedger()
    built = CaptionChain([captioner], retry_attempts=2, sleep=sleep, rng=random.Random(7))
    result = await built.caption(CAPTION_REQUEST, ledger=ledger, first_attempt=4)
    assert isinstance(result, ChainSuccess) and result.result.text == "The sea at low tide."
    assert [(r.attempt, r.outcome, r.cost_usd) for r in ledger.closed] == [
        (4, T, 0.001), (5, E, 0.002), (6, OK, 0.002)]  # blank text is empty, and still billed
    assert [row[2:] for row in ledger.opened] == [(4, None), (5, None), (6, None)]  # no estimate: unknown price
    assert sleep.delays[0] == 0.5 and len(sleep.delays) == 2


async def test_a_caption_refusal_or_quota_ends_at_once() -> None:
    built = CaptionChain([ScriptedCaptioner(Q, "never asked")], sleep=RecordingSleep())
    result = await built.caption(CAPTION_REQUEST)
    assert isinstance(result, ChainFailure) and (result.outcome, result.code) == (Q, "quota")
    again = await built.caption(CAPTION_REQUEST)
    assert isinstance(again, ChainFailure) and again.error.startswith("vision paused")
    refused = await CaptionChain([ScriptedCaptioner(R, "never asked")]).caption(CAPTION_REQUEST)
    assert isinstance(refused, ChainFailure) and refused.outcome is R and len(refused.attempts) == 1


def test_chains_from_settings_share_the_retry_rules_and_captions_skip_image_rate_limits() -> None:
    from blogimg.config import Settings

    settings = Settings(retry_attempts=4, retry_delay=0.25, provider_timeout=9.0, rate_limits={"vision": 1.0, "a": 2.0})
    images = ProviderChain.from_settings([FakeProvider("a")], settings)
    captions = CaptionChain.from_settings([ScriptedCaptioner()], settings)
    for built in (images, captions):
        assert (built.retry_attempts, built.retry_delay, built.timeout) == (4, 0.25, 9.0)
    assert set(images.limiters) == {"a"} and captions.limiters == {}
