"""The offline card provider and the provider registry."""

from __future__ import annotations

import pytest
import pyvips

from blogimg.config import Settings
from blogimg.domain import ImageRequest, PromptKind, Size
from blogimg.errors import ConfigurationError
from blogimg.providers.base import ImageProvider
from blogimg.providers.card import CardProvider
from blogimg.providers.registry import ProviderRegistry
from blogimg.testing import FakeProvider


async def test_card_renders_the_requested_size_deterministically_for_free() -> None:
    provider = CardProvider()
    request = ImageRequest(prompt="a cover about tides", size=Size(800, 500), title="Reading the Tides",
                           tags=("sea", "science"))
    first, second = await provider.generate(request), await provider.generate(request)
    assert first.data == second.data and first.cost_usd == 0.0
    image = pyvips.Image.new_from_buffer(first.data, "")
    assert (image.width, image.height, image.bands) == (800, 500, 3)
    assert "Reading the Tides" in first.alt_text
    other = await provider.generate(ImageRequest(prompt="something else", size=Size(800, 500), title="Reading the Tides"))
    assert other.data != first.data
    # The title is really drawn: the card is far from a flat gradient where the text sits.
    assert image.crop(0, 250, 800, 250).deviate() > 10


async def test_card_handles_unicode_and_inline_requests() -> None:
    request = ImageRequest(prompt="紅葉の庭", size=Size(400, 400), kind=PromptKind.INLINE,
                           title="Kyoto: 紅葉 & <Grüße>", subtitle="Go early")
    image = pyvips.Image.new_from_buffer((await CardProvider().generate(request)).data, "")
    assert (image.width, image.height) == (400, 400)


def test_card_is_the_default_without_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = ProviderRegistry()
    assert registry.default_order() == ["card"]
    registry.register("keyed", FakeProvider("keyed", key_env_vars=("FAKE_TEST_KEY",)))
    assert registry.default_order() == ["card"]
    monkeypatch.setenv("FAKE_TEST_KEY", "sk-test")
    assert registry.default_order() == ["keyed", "card"]  # keyed providers first, card last
    assert isinstance(registry.build(["card"], Settings())[0], ImageProvider)


def test_unknown_and_unconfigured_providers_are_clear_errors() -> None:
    registry = ProviderRegistry()
    with pytest.raises(ConfigurationError, match="unknown provider 'nope'; known providers: card"):
        registry.build(["nope"], Settings())
    registry.register("keyed", FakeProvider("keyed", key_env_vars=("FAKE_TEST_KEY",)))
    with pytest.raises(ConfigurationError, match="set FAKE_TEST_KEY"):
        registry.build(["keyed"], Settings())


def test_module_attribute_names_load_custom_providers() -> None:
    registry = ProviderRegistry({}, plugins=False)
    [provider] = registry.build(["blogimg.providers.card:CardProvider"], Settings())
    assert provider.info.name == "card"
    with pytest.raises(ConfigurationError, match="cannot be loaded"):
        registry.build(["no_such_module:Thing"], Settings())


def test_a_key_without_its_sdk_is_not_a_default_and_building_it_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    needy = FakeProvider("needy", key_env_vars=("FAKE_TEST_KEY",))
    needy.info = replace(needy.info, requires=("blogimg_no_such_sdk", "json"), extra="needy")
    registry = ProviderRegistry()
    registry.register("needy", needy)
    monkeypatch.setenv("FAKE_TEST_KEY", "sk-test")
    assert registry.missing_modules("needy") == ["blogimg_no_such_sdk"]
    assert registry.default_order() == ["card"]  # a stray key must not break the offline default
    with pytest.raises(ConfigurationError, match=r"needs blogimg_no_such_sdk: pip install 'blogimg\[needy\]'"):
        registry.build(["needy"], Settings())


def test_the_real_providers_declare_their_sdks() -> None:
    registry = ProviderRegistry()
    assert registry.info("openai").requires == ("openai", "httpx2")
    assert registry.info("google").requires == ("google.genai", "httpx2")
    assert registry.missing_modules("openai") == [] and registry.missing_modules("google") == []


def test_the_default_order_ends_with_the_named_fallback_not_every_offline_plugin() -> None:
    from blogimg.providers.registry import DEFAULT_FALLBACK

    registry = ProviderRegistry()
    registry.register("local", FakeProvider("local"))  # offline, needs no key: still not a default
    assert registry.default_order() == [DEFAULT_FALLBACK] == ["card"]
    with pytest.raises(ConfigurationError, match="no providers selected; name at least one, e.g. --providers card"):
        registry.build([], Settings())


def test_captioners_have_their_own_registry_and_entry_point_group() -> None:
    from blogimg.providers.registry import CaptionerRegistry

    registry = CaptionerRegistry(plugins=False)
    assert registry.names() == ["google", "openai"]
    assert registry.info("openai").key_env_vars == ProviderRegistry().info("openai").key_env_vars
    with pytest.raises(ConfigurationError, match="unknown captioner 'card'"):
        registry.factory("card")
