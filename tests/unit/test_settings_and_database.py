"""Settings sources, and the database's SQLite settings and maintained timestamps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import select, text, update

from blogimg.config import Settings
from blogimg.db.tables import BlogPost


def test_environment_wins_over_toml_and_lists_take_commas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "blogimg.toml").write_text('max_concurrent = 7\nproviders = ["card"]\nquality = "low"\n')
    monkeypatch.setenv("BLOGIMG_QUALITY", "medium")
    monkeypatch.setenv("BLOGIMG_VARIANT_WIDTHS", "320,640")
    settings = Settings()
    assert (settings.max_concurrent, settings.providers, settings.quality) == (7, ["card"], "medium")
    assert settings.variant_widths == [320, 640]
    monkeypatch.setenv("BLOGIMG_VARIANT_WIDTHS", "[800]")
    assert Settings().variant_widths == [800]


def test_typos_in_toml_and_bad_values_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "blogimg.toml").write_text("max_concurent = 7\n")
    with pytest.raises(ValidationError, match="max_concurent"):
        Settings()
    with pytest.raises(ValidationError):
        Settings(cover_size="big")


def test_importing_blogimg_reads_no_settings(tmp_path: Path) -> None:
    code = "import blogimg, blogimg.cli, blogimg.pipeline.generate, blogimg.testing"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            env={"BLOGIMG_MAX_CONCURRENT": "not a number", "PATH": ""})
    assert result.returncode == 0, result.stderr


async def test_sqlite_runs_in_wal_with_a_busy_timeout(database) -> None:
    async with database.engine.connect() as connection:
        assert (await connection.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await connection.execute(text("PRAGMA busy_timeout"))).scalar() == 30000
        assert (await connection.execute(text("PRAGMA foreign_keys"))).scalar() == 1


async def test_updated_at_is_maintained(database) -> None:
    async with database.sessions.begin() as session:
        post = BlogPost(slug="s", title="t", markdown="m")
        session.add(post)
    created = post.updated_at
    async with database.sessions.begin() as session:
        await session.execute(update(BlogPost).where(BlogPost.id == post.id).values(title="new"))
    async with database.sessions() as session:
        changed = await session.scalar(select(BlogPost.updated_at).where(BlogPost.id == post.id))
    assert changed > created
