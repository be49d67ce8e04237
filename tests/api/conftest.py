"""The app in-process through Starlette's TestClient (real ASGI, real database).

With keys configured every route but a few needs one, so ``client`` sends the full key on every
request (a test may still pass its own ``Authorization``); ``client_without_key`` sends none.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from blogimg.api.app import create_app
from blogimg.config import Settings
from blogimg.storage import MemoryStorage
from tests.support import API_KEY, AUTH, READ_KEY


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"api_keys": [API_KEY], "api_read_keys": [READ_KEY]})


@pytest.fixture
def storage() -> MemoryStorage:
    return MemoryStorage()


@pytest.fixture
def client(api_settings: Settings, storage: MemoryStorage) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings, storage=storage), headers=AUTH) as test_client:
        yield test_client


@pytest.fixture
def client_without_key(api_settings: Settings, storage: MemoryStorage) -> Iterator[TestClient]:
    """An app over the same catalogue and storage whose client sends no key."""
    with TestClient(create_app(api_settings, storage=storage)) as test_client:
        yield test_client
