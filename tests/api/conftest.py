"""The app in-process through Starlette's TestClient (real ASGI, real database)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from blogimg.api.app import create_app
from blogimg.config import Settings
from blogimg.storage import MemoryStorage
from tests.support import API_KEY


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"api_keys": [API_KEY]})


@pytest.fixture
def storage() -> MemoryStorage:
    return MemoryStorage()


@pytest.fixture
def client(api_settings: Settings, storage: MemoryStorage) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings, storage=storage)) as test_client:
        yield test_client
