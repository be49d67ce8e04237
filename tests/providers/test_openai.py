"""The OpenAI provider through the real ``openai`` SDK against a loopback fake of the Images API."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from blogimg.config import Settings
from blogimg.domain import ImageRequest, Outcome, Size
from blogimg.errors import ProviderError
from blogimg.pipeline.generate import generate
from blogimg.providers.openai import INFO, NAME, OpenAIProvider, standard_size
from blogimg.providers.pricing import TokenUsage, default_prices
from blogimg.storage import MemoryStorage
from tests.fakes import openai_api
from tests.fakes.images import png_for
from tests.fakes.openai_api import FakeOpenAI
from tests.support import write_posts

REQUEST = ImageRequest(prompt="a lighthouse at dusk", size=Size(1536, 1024), quality="high")


def token_cost_of_fake_usage(model: str) -> float | None:
    usage = openai_api.USAGE
    return default_prices().token_cost(NAME, model, TokenUsage(
        input_text=usage["input_tokens_details"]["text_tokens"],
        output_image=usage["output_tokens_details"]["image_tokens"]))


def scripted(fake: FakeOpenAI, behaviour: str) -> None:
    fake.script = lambda prompt, number: behaviour


async def outcome_of(settings: Settings, request: ImageRequest = REQUEST) -> ProviderError:
    provider = OpenAIProvider(settings)
    try:
        with pytest.raises(ProviderError) as caught:
            await provider.generate(request)
    finally:
        await provider.aclose()
    return caught.value


async def test_b64_success_costs_the_reported_tokens(fake_openai: FakeOpenAI, provider_settings: Settings) -> None:
    provider = OpenAIProvider(provider_settings)
    image = await provider.generate(REQUEST)
    await provider.aclose()
    assert image.data == png_for(REQUEST.prompt)
    expected = token_cost_of_fake_usage(provider_settings.openai_model)
    assert expected is not None and image.cost_usd == expected
    sent = fake_openai.requests[-1].json()
    assert sent == {"model": provider_settings.openai_model, "prompt": REQUEST.prompt, "size": "1536x1024",
                    "quality": "high", "n": 1}
    assert fake_openai.requests[-1].headers["authorization"] == f"Bearer {openai_api.API_KEY}"


async def test_url_response_is_downloaded_once_with_the_revised_prompt(
        fake_openai: FakeOpenAI, provider_settings: Settings) -> None:
    scripted(fake_openai, "ok_url")
    provider = OpenAIProvider(provider_settings)
    image = await provider.generate(REQUEST)
    await provider.aclose()
    name = REQUEST.prompt.replace(" ", "_")
    assert image.data == png_for(name)
    assert image.revised_prompt == f"revised: {REQUEST.prompt}"
    # Without usage the per-image list price applies.
    assert image.cost_usd == default_prices().image_price(NAME, provider_settings.openai_model, "1536x1024", "high")
    assert fake_openai.count(lambda r: r.path.startswith("/files/")) == 1


@pytest.mark.parametrize(("behaviour", "outcome", "status"), [
    ("rate_limited", Outcome.TRANSIENT, 429),
    ("server_error", Outcome.TRANSIENT, 500),
    ("overloaded", Outcome.TRANSIENT, 503),
    ("refused", Outcome.REFUSED, 400),
    ("quota", Outcome.QUOTA, 429),
    ("empty", Outcome.EMPTY, 200),
    ("malformed", Outcome.TRANSIENT, 200),
    ("slow", Outcome.TRANSIENT, None),
    ("reset", Outcome.TRANSIENT, None),
])
async def test_each_failure_has_its_outcome_and_is_sent_once(
        fake_openai: FakeOpenAI, provider_settings: Settings, behaviour: str, outcome: Outcome,
        status: int | None) -> None:
    scripted(fake_openai, behaviour)
    failure = await outcome_of(provider_settings)
    assert (failure.outcome, failure.http_status) == (outcome, status), str(failure)
    # The SDK's own retries are off: one call, one request, one ledger row.
    assert fake_openai.generations == 1


async def test_rate_limit_carries_retry_after_ms(fake_openai: FakeOpenAI, provider_settings: Settings) -> None:
    scripted(fake_openai, "rate_limited")
    failure = await outcome_of(provider_settings)
    assert failure.retry_after == pytest.approx(0.020)  # retry-after-ms wins over retry-after


async def test_wrong_key_is_401_and_pauses(fake_openai: FakeOpenAI, provider_settings: Settings,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
    failure = await outcome_of(provider_settings)
    assert (failure.outcome, failure.http_status) == (Outcome.QUOTA, 401)
    assert "sk-wrong" not in str(failure)


def test_sizes_map_to_the_nearest_standard_shape() -> None:
    assert standard_size(1536, 1024) == "1536x1024"
    assert standard_size(1200, 1200) == "1024x1024"
    assert standard_size(800, 1400) == "1024x1536"
    assert standard_size(1920, 1080) == "1536x1024"


def test_gpt_image_2_has_list_and_token_prices() -> None:
    prices = default_prices()
    assert prices.image_price(NAME, "gpt-image-2", "1024x1024", "high") == 0.211
    assert prices.image_price(NAME, "gpt-image-2", "1536x1024", "high") == 0.165
    assert prices.image_price(NAME, "gpt-image-2", "1024x1536", "low") == 0.005
    assert token_cost_of_fake_usage("gpt-image-2") == round((50 * 5.0 + 4160 * 30.0) / 1_000_000, 6)


def test_every_image_model_of_the_sdk_is_listed() -> None:
    from typing import get_args

    from openai.types.image_model import ImageModel

    offered = set(get_args(ImageModel))
    gone = {"gpt-image-1", "dall-e-2", "dall-e-3"}  # shut down / retired, per the SDK's own docs
    snapshots = {model for model in offered if re.search(r"-\d{4}-\d{2}-\d{2}$", model)}  # dated aliases
    assert set(INFO.models) == offered - gone - snapshots
    assert INFO.models[:2] == ("gpt-image-2.6-sunburst", "gpt-image-2.6-flare")  # current ones first


async def test_with_a_budget_gpt_image_2_is_estimated_called_and_costs_its_tokens(
        tmp_path: Path, provider_settings: Settings, database, fake_openai: FakeOpenAI) -> None:
    settings = provider_settings.model_copy(update={"openai_model": "gpt-image-2", "budget_daily_usd": 1.0})
    provider = OpenAIProvider(settings)
    try:
        assert provider.estimate_cost(REQUEST) == 0.165
        assert provider.estimate_cost(ImageRequest(prompt="x", size=Size(1024, 1024), quality="auto")) == 0.211
    finally:
        await provider.aclose()
    posts = write_posts(tmp_path / "posts", 1, markers=0)
    summary = await generate([posts], settings, providers=["openai"], storage=MemoryStorage())
    # Before gpt-image-2 had a price, the budget refused it and nothing was sent.
    assert (summary.succeeded, summary.failed) == (1, 0), summary.failures
    assert fake_openai.generations == 1 and fake_openai.requests[-1].json()["model"] == "gpt-image-2"
    expected = token_cost_of_fake_usage("gpt-image-2")
    assert expected is not None and summary.cost_usd == pytest.approx(expected)


async def test_a_token_priced_model_without_a_list_price_is_not_estimated(provider_settings: Settings,
                                                                        fake_openai: FakeOpenAI) -> None:
    # gpt-image-2.6-sunburst is priced per token only: its cost is known after the call, not before.
    provider = OpenAIProvider(provider_settings.model_copy(update={"openai_model": "gpt-image-2.6-sunburst"}))
    try:
        assert provider.estimate_cost(REQUEST) is None
        image = await provider.generate(REQUEST)
    finally:
        await provider.aclose()
    expected = token_cost_of_fake_usage("gpt-image-2.6-sunburst")
    assert expected is not None and image.cost_usd == expected
