"""The CLI's refusals: one clear line on stderr, a non-zero exit, no traceback, nothing created.

Each test runs ``blogimg`` as a subprocess (tests/support.py ``run_cli``) against a temporary
data directory, except where a pipeline function is timed in-process.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from blogimg.config import Settings
from blogimg.domain import Outcome
from blogimg.pipeline import generate as generate_module
from blogimg.testing import FakeProvider
from tests.support import query, registry_with, run_cli, write_posts


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The single line a refusal prints, after checking it is the only one and no traceback came."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


# --- #9: retry names what it cannot retry, and times the whole run ---------------------------


async def test_retry_refuses_unknown_ids_and_images_that_did_not_fail(tmp_path: Path, settings: Settings) -> None:
    from blogimg.pipeline.generate import generate

    data = tmp_path / "data"
    broken = FakeProvider("broken", script=lambda request, number: Outcome.INVALID)
    await generate([write_posts(tmp_path / "bad", 1, markers=0)], settings, providers=["broken"],
                   registry=registry_with(broken))
    await generate([write_posts(tmp_path / "good", 1, markers=0, name="good-{number}", title="Good {number}")],
                   settings, providers=["fake"], registry=registry_with(FakeProvider("fake")))
    database = data / "blogimg.db"
    [(failed,)] = query(database, "SELECT id FROM generated_images WHERE status = 'failed'")
    [(succeeded,)] = query(database, "SELECT id FROM generated_images WHERE status = 'succeeded'")

    unknown = one_error_line(run_cli("retry", "999", data=data, cwd=tmp_path))
    assert "no image with id 999" in unknown
    finished = one_error_line(run_cli("retry", str(succeeded), data=data, cwd=tmp_path))
    assert f"image {succeeded} is succeeded" in finished and "only failed images" in finished
    mixed = one_error_line(run_cli("retry", str(failed), "998", "999", data=data, cwd=tmp_path))
    assert "no images with ids 998, 999" in mixed
    # Refused as a whole: the failed image named beside the unknown ones was not queued.
    assert query(database, "SELECT status FROM generated_images WHERE id = ?", failed) == [("failed",)]


async def test_retry_summary_counts_the_whole_run(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    opened = generate_module.open_runtime

    @asynccontextmanager
    async def slow_to_open(*arguments: Any, **options: Any) -> AsyncIterator[Any]:
        await asyncio.sleep(0.5)  # as building providers and migrating can take a while
        async with opened(*arguments, **options) as runtime:
            yield runtime

    monkeypatch.setattr(generate_module, "open_runtime", slow_to_open)
    only_fake = settings.model_copy(update={"providers": ["fake"]})
    summary = await generate_module.retry(only_fake, None, registry=registry_with(FakeProvider("fake")))
    assert summary.seconds >= 0.5


# --- #10: an unknown --status is refused, naming the accepted values -------------------------


def test_search_refuses_an_unknown_status(tmp_path: Path) -> None:
    line = one_error_line(run_cli("search", "x", "--status", "bogus", data=tmp_path / "data", cwd=tmp_path))
    assert "--status" in line and "'bogus'" in line
    assert all(f"'{status}'" in line for status in ("queued", "running", "succeeded", "failed")), line
    assert not (tmp_path / "data").exists()


# --- #11: a database driver that is not installed ----------------------------------------------


def without_psycopg(directory: Path) -> str:
    """A PYTHONPATH on which ``import psycopg`` fails, as it does without the postgres extra."""
    (directory / "psycopg").mkdir(parents=True)
    (directory / "psycopg" / "__init__.py").write_text(
        'raise ModuleNotFoundError("No module named \'psycopg\'", name="psycopg")\n')
    return os.pathsep.join(filter(None, [str(directory), os.environ.get("PYTHONPATH")]))


@pytest.mark.parametrize(("url", "expected"), [
    ("postgresql+psycopg://blogimg@127.0.0.1:1/blogimg", "pip install 'blogimg[postgres]'"),
    ("postgresql+pg8000://blogimg@127.0.0.1:1/blogimg", "postgresql+psycopg://"),
    ("mysql://blogimg@127.0.0.1:1/blogimg", "sqlite+aiosqlite:///"),
])
def test_a_database_driver_that_is_missing_is_named_with_its_cure(tmp_path: Path, url: str, expected: str) -> None:
    result = run_cli("init", data=tmp_path / "data", cwd=tmp_path, BLOGIMG_DATABASE_URL=url,
                     PYTHONPATH=without_psycopg(tmp_path / "site"))
    line = one_error_line(result)
    assert expected in line and "unexpected" not in line, line
    assert result.returncode == 2


# --- #12: blogimg.toml's own mistakes name the file, the line and the key as written ----------


@pytest.mark.parametrize(("toml", "expected"), [
    ("quality = 'low'\nmax_concurrent = \n", ["not valid TOML", "line 2"]),
    ("max_concurent = 3\n", ["key max_concurent", "unknown setting", "max_concurrent?"]),
    ("Max_Concurrent = 'lots'\n", ["key Max_Concurrent", "valid integer"]),
])
def test_a_bad_blogimg_toml_is_named_as_such(tmp_path: Path, toml: str, expected: list[str]) -> None:
    (tmp_path / "blogimg.toml").write_text(toml)
    line = one_error_line(run_cli("providers", data=tmp_path / "data", cwd=tmp_path))
    assert str((tmp_path / "blogimg.toml").resolve()) in line, line
    assert all(part in line for part in expected), line
    assert "BLOGIMG_" not in line and "unexpected" not in line, line


# --- #13: --debug after the command, as the hint suggests --------------------------------------


def test_debug_is_accepted_after_the_command(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run_cli("init", data=data, cwd=tmp_path).returncode == 0
    assert run_cli("stats", "--debug", data=data, cwd=tmp_path).returncode == 0
    broken = "mysql://nobody@127.0.0.1:1/nothing"
    for arguments in (["stats", "--debug"], ["--debug", "stats"]):
        debugged = run_cli(*arguments, data=data, cwd=tmp_path, BLOGIMG_DATABASE_URL=broken)
        assert debugged.returncode != 0 and "Traceback" in debugged.stderr, debugged.stderr
    assert "not supported" in one_error_line(run_cli("stats", data=data, cwd=tmp_path, BLOGIMG_DATABASE_URL=broken))
    # After "--" it is an argument like any other: here, the text searched for.
    literal = run_cli("search", "--", "--debug", data=data, cwd=tmp_path)
    assert literal.returncode == 0 and "no images match" in literal.stdout, literal.stderr


# --- #14: commands that only read the catalogue never create one -------------------------------


@pytest.mark.parametrize("arguments", [["stats"], ["search", "x"], ["cleanup"]])
def test_reading_commands_refuse_a_missing_catalogue(tmp_path: Path, arguments: list[str]) -> None:
    data = tmp_path / "data"
    line = one_error_line(run_cli(*arguments, data=data, cwd=tmp_path))
    assert f"no catalogue at {(data / 'blogimg.db').resolve()}" in line, line
    assert "BLOGIMG_DATABASE_URL" in line and "blogimg generate" in line, line
    assert not data.exists() and not (tmp_path / "blogimg-data").exists()
