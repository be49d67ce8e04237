"""Captioners through the caption chain, the real SDKs and loopback fakes of their HTTP APIs.

The fakes here extend the shared ones with the vision endpoints' failure shapes: OpenAI's Chat
Completions (which the Images fake does not serve) and scripted Gemini caption answers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from blogimg.config import Settings
from blogimg.domain import AttemptRecord, Outcome
from blogimg.errors import BudgetExceededError, ConfigurationError
from blogimg.pipeline.chain import CaptionChain, ChainFailure, ChainSuccess
from blogimg.providers.base import Captioner, CaptionRequest
from blogimg.providers.google import GoogleProvider
from blogimg.providers.openai import OpenAIProvider
from blogimg.providers.pricing import TokenUsage, default_prices
from blogimg.providers.registry import CAPTIONER_ENTRY_POINT_GROUP, CaptionerRegistry
from blogimg.providers.vision import GeminiCaptioner, OpenAICaptioner
from tests.fakes import openai_api
from tests.fakes.google_api import FakeGemini
from tests.fakes.images import png_for
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.server import Received, Reply
from tests.support import RecordingSleep, point_gemini_at, point_openai_at

REQUEST = CaptionRequest(image=png_for("a lighthouse"), mime_type="image/png", title="Lighthouses",
                         summary="Towers of the coast", language="fr", max_chars=80)
CAPTION = "A red lighthouse on a rocky shore."
CaptionScript = Callable[[int], str]


class VisionOpenAI(FakeOpenAI):
    """FakeOpenAI plus POST /v1/chat/completions, answering per call number from ``captions``."""

    def __init__(self, captions: CaptionScript = lambda number: "ok") -> None:
        super().__init__()
        self.captions = captions
        self.completions: list[dict] = []

    def _answer(self, request: Received) -> Reply:
        if request.path != "/v1/chat/completions":
            return super()._answer(request)
        if request.headers.get("authorization") != f"Bearer {openai_api.API_KEY}":
            return openai_api._error(401, "Incorrect API key provided: sk-****.", "invalid_request_error",
                                     "invalid_api_key")
        self.completions.append(request.json())
        behaviour = self.captions(len(self.completions))
        message = {"role": "assistant", "content": CAPTION, "refusal": None, "annotations": []}
        finish = "stop"
        if behaviour == "refusal":
            message, finish = {"role": "assistant", "content": None, "refusal": "I can't describe that."}, "stop"
        elif behaviour == "empty":
            message["content"] = "  "
        elif behaviour != "ok":
            return self._reply(behaviour, "", {})  # the documented error bodies and headers of the API
        return Reply(200, {"id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()),
                           "model": "gpt-4.1-mini", "choices": [{"index": 0, "message": message, "logprobs": None,
                                                                 "finish_reason": finish}],
                           "usage": {"prompt_tokens": 300, "completion_tokens": 20, "total_tokens": 320}})


class VisionGemini(FakeGemini):
    """FakeGemini whose caption answers follow ``captions`` (per caption call number)."""

    def __init__(self, captions: CaptionScript = lambda number: "ok") -> None:
        super().__init__()
        self.caption_script = captions

    def _caption(self, body: dict) -> Reply:
        behaviour = self.caption_script(len(self.captions) + 1)
        if behaviour == "ok":
            return super()._caption(body)
        self.captions.append(body["contents"][0]["parts"])
        if behaviour == "empty":
            return Reply(200, {"candidates": [{"content": {"parts": [{"text": ""}], "role": "model"},
                                               "finishReason": "STOP"}],
                               "usageMetadata": {"promptTokenCount": 300, "totalTokenCount": 300}})
        return self._generate(behaviour, "", "gemini-2.5-flash")  # errors and blocks as the API sends them


@dataclass
class RecordingLedger:
    """The chain's Ledger protocol, keeping rows in memory as the database would."""

    rows: dict[int, tuple[str, str | None, int, float | None]] = field(default_factory=dict)
    closed: dict[int, AttemptRecord] = field(default_factory=dict)
    refuse: bool = False

    async def open(self, provider: str, model: str | None, number: int, estimate: float | None) -> int:
        if self.refuse:
            raise BudgetExceededError("over the daily budget")
        handle = len(self.rows) + 1
        self.rows[handle] = (provider, model, number, estimate)
        return handle

    async def close(self, handle: object, record: AttemptRecord) -> None:
        assert isinstance(handle, int) and handle in self.rows
        self.closed[handle] = record


@pytest.fixture
def vision_openai(monkeypatch: pytest.MonkeyPatch) -> Iterator[VisionOpenAI]:
    with VisionOpenAI() as fake:
        point_openai_at(monkeypatch, fake.base_url)
        yield fake


@pytest.fixture
def vision_gemini(monkeypatch: pytest.MonkeyPatch) -> Iterator[VisionGemini]:
    with VisionGemini() as fake:
        point_gemini_at(monkeypatch, fake.url)
        yield fake


def caption_chain(captioner: Captioner, settings: Settings) -> tuple[CaptionChain, RecordingSleep]:
    sleep = RecordingSleep()
    chain = CaptionChain([captioner], retry_attempts=settings.retry_attempts, retry_delay=settings.retry_delay,
                         max_delay=settings.retry_max_delay, timeout=settings.provider_timeout, sleep=sleep,
                         breaker_threshold=0)
    return chain, sleep


def built(name: str, settings: Settings) -> Captioner:
    [captioner] = CaptionerRegistry(plugins=False).build([name], settings)
    return captioner


@pytest.mark.parametrize("name", ["openai", "google"])
async def test_a_429_is_retried_after_its_retry_after_and_every_call_is_a_ledger_row(
        name: str, vision_openai: VisionOpenAI, vision_gemini: VisionGemini, provider_settings: Settings) -> None:
    vision_openai.captions = lambda number: "rate_limited" if number == 1 else "ok"
    vision_gemini.caption_script = lambda number: "rate_limited" if number == 1 else "ok"
    chain, sleep = caption_chain(built(name, provider_settings), provider_settings)
    ledger = RecordingLedger()
    try:
        result = await chain.caption(REQUEST, ledger=ledger, first_attempt=3)  # the image took calls 1 and 2
    finally:
        await chain.aclose()
    assert isinstance(result, ChainSuccess), result
    model = {"openai": "gpt-4.1-mini", "google": "gemini-2.5-flash"}[name]
    text = {"openai": CAPTION, "google": vision_gemini.caption_text}[name]
    assert (result.provider, result.result.text, result.result.model) == (name, text, model)
    # The server's own wait wins: OpenAI's retry-after-ms (20 ms), Google's RetryInfo (0.02 s).
    assert sleep.delays == [pytest.approx(0.02)]
    assert [row[:3] for row in ledger.rows.values()] == [(name, model, 3), (name, model, 4)]
    records = list(ledger.closed.values())
    assert [(r.attempt, r.outcome, r.http_status) for r in records] == [(3, Outcome.TRANSIENT, 429), (4, Outcome.OK, None)]
    assert records == list(result.attempts)
    usage = {"openai": TokenUsage(input_text=300, output_text=20), "google": TokenUsage(input_text=300, output_text=20)}
    assert records[1].cost_usd == default_prices().token_cost(name, model, usage[name]) and records[1].cost_usd
    sent = len(vision_openai.completions) if name == "openai" else len(vision_gemini.captions)
    assert sent == 2  # the SDK's own retries are off: one request per ledger row


@pytest.mark.parametrize(("name", "behaviour"), [("openai", "bad_key"), ("google", "unauthenticated")])
async def test_a_401_is_quota_and_pauses_the_captioner(
        name: str, behaviour: str, vision_openai: VisionOpenAI, vision_gemini: VisionGemini,
        provider_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    if name == "openai":
        monkeypatch.setenv("OPENAI_API_KEY", "sk-not-the-key")
    vision_gemini.caption_script = lambda number: behaviour
    chain, sleep = caption_chain(built(name, provider_settings), provider_settings)
    ledger = RecordingLedger()
    try:
        first = await chain.caption(REQUEST, ledger=ledger)
        second = await chain.caption(REQUEST, ledger=ledger)
    finally:
        await chain.aclose()
    assert isinstance(first, ChainFailure) and (first.outcome, first.code) == (Outcome.QUOTA, "quota")
    assert first.attempts[0].http_status == 401 and sleep.delays == []
    assert name in chain.paused
    assert isinstance(second, ChainFailure) and "paused" in second.error and second.attempts == ()
    assert len(ledger.rows) == 1  # the paused captioner is not called again this run


@pytest.mark.parametrize(("name", "behaviour"), [("openai", "refused"), ("openai", "refusal"), ("google", "blocked")])
async def test_a_safety_refusal_is_refused_and_never_retried(
        name: str, behaviour: str, vision_openai: VisionOpenAI, vision_gemini: VisionGemini,
        provider_settings: Settings) -> None:
    vision_openai.captions = vision_gemini.caption_script = lambda number: behaviour
    chain, _ = caption_chain(built(name, provider_settings), provider_settings)
    try:
        result = await chain.caption(REQUEST)
    finally:
        await chain.aclose()
    assert isinstance(result, ChainFailure) and result.outcome is Outcome.REFUSED, result
    assert len(result.attempts) == 1


@pytest.mark.parametrize("name", ["openai", "google"])
async def test_a_blank_caption_is_empty_retried_and_never_a_success(
        name: str, vision_openai: VisionOpenAI, vision_gemini: VisionGemini, provider_settings: Settings) -> None:
    vision_openai.captions = vision_gemini.caption_script = lambda number: "empty"
    chain, sleep = caption_chain(built(name, provider_settings), provider_settings)
    try:
        result = await chain.caption(REQUEST)
    finally:
        await chain.aclose()
    assert isinstance(result, ChainFailure) and (result.outcome, result.code) == (Outcome.EMPTY, "empty")
    assert [r.outcome for r in result.attempts] == [Outcome.EMPTY] * (provider_settings.retry_attempts + 1)
    assert all(r.cost_usd is not None for r in result.attempts)  # a blank answer is still billed


async def test_the_request_carries_the_image_and_the_post(vision_openai: VisionOpenAI, vision_gemini: VisionGemini,
                                                          provider_settings: Settings) -> None:
    for name in ("openai", "google"):
        chain, _ = caption_chain(built(name, provider_settings), provider_settings)
        try:
            assert isinstance(await chain.caption(REQUEST), ChainSuccess)
        finally:
            await chain.aclose()
    [completion] = vision_openai.completions
    text, image = completion["messages"][0]["content"]
    assert "Lighthouses" in text["text"] and "'fr'" in text["text"] and "80 characters" in text["text"]
    assert image["image_url"]["url"].startswith("data:image/png;base64,")
    [parts] = vision_gemini.captions
    assert "inlineData" in parts[0] and "Towers of the coast" in parts[1]["text"]


async def test_the_budget_can_forbid_a_caption_and_nothing_is_sent(
        vision_gemini: VisionGemini, provider_settings: Settings) -> None:
    chain, _ = caption_chain(built("google", provider_settings), provider_settings)
    try:
        result = await chain.caption(REQUEST, ledger=RecordingLedger(refuse=True))
    finally:
        await chain.aclose()
    assert isinstance(result, ChainFailure) and result.code == "budget" and result.attempts == ()
    assert vision_gemini.captions == []


def test_captioners_use_their_providers_key_variables_sdk_and_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = CaptionerRegistry(plugins=False)
    for name, provider in (("openai", OpenAIProvider), ("google", GoogleProvider)):
        info = registry.info(name)
        assert info.name == provider.info.name == name
        assert (info.key_env_vars, info.requires, info.extra) == (
            provider.info.key_env_vars, provider.info.requires, provider.info.extra)
    assert (OpenAICaptioner.info.models, GeminiCaptioner.info.models) == (("gpt-4.1-mini",), ("gemini-2.5-flash",))
    for variable in ("OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(variable, raising=False)
    with pytest.raises(ConfigurationError, match=r"captioner 'google' needs an API key: set GEMINI_API_KEY or "
                                                 r"GOOGLE_API_KEY"):
        registry.build(["google"], Settings())
    with pytest.raises(ConfigurationError, match="set OPENAI_API_KEY"):
        registry.build(["openai"], Settings())
    with pytest.raises(ConfigurationError, match="unknown captioner 'nope'; known captioners: google, openai"):
        registry.build(["nope"], Settings())


def test_a_captioner_without_its_sdk_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    class Needy:
        info = replace(GeminiCaptioner.info, name="needy", requires=("blogimg_no_such_sdk",), extra="needy",
                       key_env_vars=())

    registry = CaptionerRegistry({}, plugins=False)
    registry.register("needy", Needy)
    with pytest.raises(ConfigurationError, match=r"captioner 'needy' needs blogimg_no_such_sdk: "
                                                 r"pip install 'blogimg\[needy\]'"):
        registry.build(["needy"], Settings())
    assert CAPTIONER_ENTRY_POINT_GROUP == "blogimg.captioners"


async def test_the_model_setting_names_the_model_in_the_ledger(vision_gemini: VisionGemini,
                                                               provider_settings: Settings) -> None:
    settings = provider_settings.model_copy(update={"alt_text_model": "gemini-2.5-flash-lite"})
    captioner = built("google", settings)
    assert captioner.info.models == ("gemini-2.5-flash-lite",)
    chain, _ = caption_chain(captioner, settings)
    ledger = RecordingLedger()
    try:
        result = await chain.caption(REQUEST, ledger=ledger)
    finally:
        await chain.aclose()
    assert isinstance(result, ChainSuccess) and result.result.model == "gemini-2.5-flash-lite"
    assert [row[:2] for row in ledger.rows.values()] == [("google", "gemini-2.5-flash-lite")]
