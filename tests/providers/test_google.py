"""The Google provider through the real ``google-genai`` SDK against a loopback fake of the Gemini API."""

from __future__ import annotations

import pytest

from blogimg.config import Settings
from blogimg.domain import ImageRequest, Outcome, Size
from blogimg.errors import ProviderError
from blogimg.providers.google import INFO, NAME, GoogleProvider, nearest_aspect_ratio
from blogimg.providers.pricing import TokenUsage, default_prices
from tests.fakes import google_api
from tests.fakes.google_api import FakeGemini
from tests.fakes.images import png_for

REQUEST = ImageRequest(prompt="a tea house in the rain", size=Size(1536, 1024))
FLASH = "gemini-2.5-flash-image"  # priced per token, input and output: the token tests use it


def on_model(settings: Settings, model: str) -> Settings:
    return settings.model_copy(update={"google_model": model})




async def failure_of(settings: Settings) -> ProviderError:
    provider = GoogleProvider(settings)
    try:
        with pytest.raises(ProviderError) as caught:
            await provider.generate(REQUEST)
    finally:
        await provider.aclose()
    return caught.value


async def test_gemini_image_part_is_the_image_and_tokens_its_cost(fake_gemini: FakeGemini,
                                                                 provider_settings: Settings) -> None:
    provider = GoogleProvider(on_model(provider_settings, FLASH))
    image = await provider.generate(REQUEST)
    await provider.aclose()
    assert image.data == png_for(REQUEST.prompt)
    usage = google_api.USAGE
    assert image.cost_usd == default_prices().token_cost(NAME, FLASH, TokenUsage(
        input_text=usage["promptTokenCount"], output_image=usage["candidatesTokenCount"]))
    sent = fake_gemini.requests[-1]
    assert sent.headers["x-goog-api-key"] == google_api.API_KEY
    config = sent.json()["generationConfig"]
    assert config["responseModalities"] == ["IMAGE"] and config["imageConfig"]["aspectRatio"] == "3:2"


@pytest.mark.parametrize(("behaviour", "outcome", "status"), [
    ("blocked", Outcome.REFUSED, 200),
    ("image_safety", Outcome.REFUSED, 200),
    ("no_image", Outcome.EMPTY, 200),
    ("rate_limited", Outcome.TRANSIENT, 429),
    ("daily_quota", Outcome.QUOTA, 429),
    ("server_error", Outcome.TRANSIENT, 500),
    ("overloaded", Outcome.TRANSIENT, 503),
    ("permission", Outcome.QUOTA, 403),
    ("malformed", Outcome.TRANSIENT, None),
    ("slow", Outcome.TRANSIENT, None),
    ("reset", Outcome.TRANSIENT, None),
    ("unauthenticated", Outcome.QUOTA, 401),
])
async def test_each_failure_has_its_outcome_and_is_sent_once(
        fake_gemini: FakeGemini, provider_settings: Settings, behaviour: str, outcome: Outcome,
        status: int | None) -> None:
    fake_gemini.script = lambda prompt, number: behaviour
    failure = await failure_of(provider_settings)
    assert (failure.outcome, failure.http_status) == (outcome, status), str(failure)
    assert fake_gemini.generations == 1  # the SDK's retries are off


async def test_retry_info_is_the_retry_after(fake_gemini: FakeGemini, provider_settings: Settings) -> None:
    fake_gemini.script = lambda prompt, number: "rate_limited"
    assert (await failure_of(provider_settings)).retry_after == pytest.approx(0.02)


async def test_invalid_key_pauses_the_provider(fake_gemini: FakeGemini, provider_settings: Settings,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "not-the-key")
    failure = await failure_of(provider_settings)
    assert failure.outcome is Outcome.QUOTA and "API key not valid" in str(failure)


@pytest.mark.filterwarnings("ignore::Warning")
@pytest.mark.parametrize(("behaviour", "outcome"), [("ok", Outcome.OK), ("filtered", Outcome.REFUSED),
                                                    ("dropped", Outcome.REFUSED)])
async def test_imagen_in_vertex_mode(fake_gemini: FakeGemini, provider_settings: Settings,
                                     monkeypatch: pytest.MonkeyPatch, behaviour: str, outcome: Outcome) -> None:
    monkeypatch.setenv("GOOGLE_GENAI_USE_VERTEXAI", "true")
    fake_gemini.script = lambda prompt, number: behaviour
    provider = GoogleProvider(provider_settings.model_copy(update={"google_model": "imagen-4.0-generate-001"}))
    try:
        if outcome is Outcome.OK:
            image = await provider.generate(REQUEST)
            assert image.data == png_for(REQUEST.prompt)
            assert image.cost_usd == default_prices().image_price(NAME, "imagen-4.0-generate-001", "1536x1024", "high")
        else:
            with pytest.raises(ProviderError) as caught:
                await provider.generate(REQUEST)
            assert caught.value.outcome is outcome
    finally:
        await provider.aclose()
    assert fake_gemini.requests[-1].path.endswith("/models/imagen-4.0-generate-001:predict")


async def test_imagen_without_vertex_mode_is_an_invalid_request(fake_gemini: FakeGemini,
                                                                provider_settings: Settings) -> None:
    failure = await failure_of(provider_settings.model_copy(update={"google_model": "imagen-4.0-generate-001"}))
    assert failure.outcome is Outcome.INVALID and fake_gemini.generations == 0


def test_aspect_ratios() -> None:
    assert nearest_aspect_ratio(1536, 1024) == "3:2"
    assert nearest_aspect_ratio(1024, 1024) == "1:1"
    assert nearest_aspect_ratio(1920, 1080) == "16:9"


async def test_a_blocked_prompt_costs_its_prompt_tokens_not_an_image(fake_gemini: FakeGemini,
                                                                     provider_settings: Settings) -> None:
    fake_gemini.script = lambda prompt, number: "blocked"
    blocked = await failure_of(on_model(provider_settings, FLASH))
    prompt_only = default_prices().token_cost(NAME, FLASH, TokenUsage(input_text=12))
    assert blocked.cost_usd == prompt_only and prompt_only < 0.001
    fake_gemini.script = lambda prompt, number: "no_image"  # no usage reported, no image made
    assert (await failure_of(on_model(provider_settings, FLASH))).cost_usd == 0.0


def test_newer_gemini_image_models_have_prices() -> None:
    prices = default_prices()
    assert prices.image_price(NAME, "gemini-3-pro-image", "1536x1024", "high") == 0.134
    assert prices.image_price(NAME, "gemini-nano-banana-2.1", "1536x1024", "low") == 0.0336
    for unpriced in ("gemini-3.1-flash-lite-image", "gemini-3.1-flash-image", "nano-banana-pro-preview"):
        assert prices.image_price(NAME, unpriced, "1536x1024", "high") is None


def test_every_image_model_of_the_sdk_is_listed() -> None:
    from typing import get_args

    from google.genai._gaos.types.interactions.model import Model

    literal = next(arg for arg in get_args(Model) if get_args(arg))
    image_models = {m for m in get_args(literal) if "image" in m or "nano-banana" in m}
    assert image_models <= set(INFO.models)
    assert INFO.models[0] == "gemini-3-pro-image" and INFO.models[-1].startswith("imagen-")


@pytest.mark.parametrize(("model", "list_price"), [("gemini-3-pro-image", 0.134), ("gemini-nano-banana-2.1", 0.0336)])
async def test_newer_models_are_estimated_and_costed(fake_gemini: FakeGemini, provider_settings: Settings,
                                                     model: str, list_price: float) -> None:
    provider = GoogleProvider(on_model(provider_settings, model))
    try:
        assert provider.estimate_cost(REQUEST) == list_price  # a budget can admit them
        image = await provider.generate(REQUEST)
    finally:
        await provider.aclose()
    assert fake_gemini.requests[-1].path.endswith(f"/models/{model}:generateContent")
    usage = google_api.USAGE
    tokens = default_prices().token_cost(NAME, model, TokenUsage(input_text=usage["promptTokenCount"],
                                                                 output_image=usage["candidatesTokenCount"]))
    # The reported tokens where every kind has a price; else the list price, never unknown for a made image.
    assert image.cost_usd == (tokens if tokens is not None else list_price)
