"""The OpenAI provider through the real ``openai`` SDK against a loopback fake of the Images API."""

from __future__ import annotations

import pytest

from blogimg.config import Settings
from blogimg.domain import ImageRequest, Outcome, Size
from blogimg.errors import ProviderError
from blogimg.providers.openai import NAME, OpenAIProvider, standard_size
from blogimg.providers.pricing import TokenUsage, default_prices
from tests.fakes import openai_api
from tests.fakes.images import png_for
from tests.fakes.openai_api import FakeOpenAI

REQUEST = ImageRequest(prompt="a lighthouse at dusk", size=Size(1536, 1024), quality="high")


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
    usage = openai_api.USAGE
    expected = default_prices().token_cost(NAME, "gpt-image-1.5", TokenUsage(
        input_text=usage["input_tokens_details"]["text_tokens"],
        output_image=usage["output_tokens_details"]["image_tokens"]))
    assert expected is not None and image.cost_usd == expected
    sent = fake_openai.requests[-1].json()
    assert sent == {"model": "gpt-image-1.5", "prompt": REQUEST.prompt, "size": "1536x1024",
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
    assert image.cost_usd == default_prices().image_price(NAME, "gpt-image-1.5", "1536x1024", "high")
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
