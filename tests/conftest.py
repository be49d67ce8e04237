"""Shared fixtures: settings pointing into a temporary directory, and a fresh database.

Helpers that test modules import live in tests/support.py; nothing imports this file.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from blogimg.config import Settings
from blogimg.db.database import Database
from tests.postgres import postgres_database
from tests.support import PROVIDER_VARIABLES

pytest_plugins = ["tests.lock_report"]  # a failure on "database is locked" names the lock's holder


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # No test may pick up a developer's keys, settings or blogimg.toml.
    for name in list(os.environ):
        if (name.startswith("BLOGIMG_") and not name.startswith("BLOGIMG_TEST_")) or name in PROVIDER_VARIABLES:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """SQLite in the test's directory by default; a fresh PostgreSQL database when parametrized so
    (``tests.support.on_both_engines``)."""
    engine = getattr(request, "param", "sqlite")
    if engine == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'data' / 'blogimg.db'}"
        return
    with postgres_database() as url:
        yield url


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        storage_path=tmp_path / "data" / "images",
        retry_delay=0.001,
        variant_widths=[48, 80],
        avif_effort=0,
        thumbnail_size=300,
        breaker_threshold=0,  # tests that count retries must not have a circuit cut them short
    )


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    """The catalogue of ``settings``, migrated, with its queue, ledger and reporting."""
    opened = await Database.open(settings.database_url)
    yield opened
    await opened.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests run last. Playwright's sync API runs an event loop in the main thread for as long
    as its session fixture lives, and every asyncio test after it would fail with "Runner.run()
    cannot be called from a running event loop"; its server (tests/browser/conftest.py) would
    also load the machine under the timing-sensitive tests."""
    browser = Path(__file__).parent / "browser"
    items.sort(key=lambda item: Path(str(item.path)).is_relative_to(browser))  # stable: keeps the rest in order
