"""Shared fixtures: settings pointing into a temporary directory, and a fresh database."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from blogimg.config import Settings
from blogimg.db.engine import open_database
from blogimg.db.repository import Repository
from tests.postgres import postgres_database

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPOSITORY_ROOT / "examples" / "posts"
# The SDKs' own variables: a developer's real keys or endpoints must never reach a test.
PROVIDER_VARIABLES = frozenset({
    "OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "OPENAI_ADMIN_KEY",
    "GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_VERTEX_BASE_URL",
    "GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_GENAI_USE_ENTERPRISE", "GOOGLE_CLOUD_PROJECT",
    "GOOGLE_CLOUD_LOCATION", "GOOGLE_APPLICATION_CREDENTIALS",
})


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # No test may pick up a developer's keys, settings or blogimg.toml.
    for name in list(os.environ):
        if (name.startswith("BLOGIMG_") and not name.startswith("BLOGIMG_TEST_")) or name in PROVIDER_VARIABLES:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


ENGINES = ["sqlite", "postgresql"]
#: Run a test on SQLite and on PostgreSQL: ``@on_both_engines`` (or as a module's ``pytestmark``).
on_both_engines = pytest.mark.parametrize("database_url", ENGINES, indirect=True)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """SQLite in the test's directory by default; a fresh PostgreSQL database when parametrized so."""
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
async def repository(settings: Settings):
    engine, sessions = await open_database(settings.database_url)
    yield Repository(engine, sessions)
    await engine.dispose()
