"""Shared fixtures: settings pointing into a temporary directory, and a fresh database."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from blogimg.config import Settings
from blogimg.db.engine import open_database
from blogimg.db.repository import Repository

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPOSITORY_ROOT / "examples" / "posts"


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # No test may pick up a developer's keys, settings or blogimg.toml.
    for name in list(os.environ):
        if (name.startswith("BLOGIMG_") and not name.startswith("BLOGIMG_TEST_")) or name in {"OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"}:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'data' / 'blogimg.db'}",
        storage_path=tmp_path / "data" / "images",
        retry_delay=0.001,
        variant_widths=[48, 80],
        avif_effort=0,
        thumbnail_size=300,
    )


@pytest.fixture
async def repository(settings: Settings):
    engine, sessions = await open_database(settings.database_url)
    yield Repository(engine, sessions)
    await engine.dispose()
