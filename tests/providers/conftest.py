"""Fixtures that point the real SDKs at loopback fakes through their own variables."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from blogimg.config import Settings
from tests.fakes.google_api import FakeGemini
from tests.fakes.openai_api import FakeOpenAI
from tests.support import point_gemini_at, point_openai_at


@pytest.fixture
def provider_settings(settings: Settings) -> Settings:
    # Loopback is allowed for image URLs only because the fakes live there; the default refuses it.
    return settings.model_copy(update={"provider_timeout": 1.0, "download_allow_loopback": True,
                                       "retry_delay": 0.001})


@pytest.fixture
def fake_openai(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        point_openai_at(monkeypatch, fake.base_url)
        yield fake


@pytest.fixture
def fake_gemini(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGemini]:
    with FakeGemini() as fake:
        point_gemini_at(monkeypatch, fake.url)
        yield fake
