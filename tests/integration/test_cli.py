"""The real CLI as a subprocess: the demo, re-runs, and one clear line for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import EXAMPLES
from tests.integration.cli_helpers import query, referenced_keys, run_cli, stored_files


def test_generate_examples_then_rerun_changes_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = run_cli("generate", str(EXAMPLES), data=data, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "summary" in first.stdout and "generated now" in first.stdout
    database = data / "blogimg.db"
    posts = query(database, "SELECT slug, images_enabled FROM blog_posts ORDER BY slug")
    assert len(posts) == len(list(EXAMPLES.glob("*.md")))
    illustrated = {slug for slug, enabled in posts if enabled}
    with_images = {row[0] for row in query(database,
        "SELECT DISTINCT p.slug FROM generated_images g JOIN blog_posts p ON p.id = g.post_id WHERE g.status = 'succeeded'")}
    assert with_images == illustrated and len(illustrated) >= 5
    assert query(database, "SELECT count(*) FROM generated_images WHERE status != 'succeeded'") == [(0,)]
    tables = ["blog_posts", "image_prompts", "generated_images", "image_variants", "generation_attempts"]
    before = {table: query(database, f"SELECT count(*) FROM {table}")[0][0] for table in tables}
    files = stored_files(data / "images")
    assert files == referenced_keys(database)

    second = run_cli("generate", str(EXAMPLES), data=data, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert {table: query(database, f"SELECT count(*) FROM {table}")[0][0] for table in tables} == before
    assert stored_files(data / "images") == files
    assert "nothing to do" in second.stdout

    stats = run_cli("stats", data=data, cwd=tmp_path)
    assert stats.returncode == 0 and "succeeded" in stats.stdout and "card" in stats.stdout


def test_init_and_providers(tmp_path: Path) -> None:
    data = tmp_path / "data"
    init = run_cli("init", data=data, cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    assert query(data / "blogimg.db", "SELECT version_num FROM alembic_version") == [("0001",)]
    providers = run_cli("providers", data=data, cwd=tmp_path)
    assert providers.returncode == 0 and "card" in providers.stdout and "offline" in providers.stdout


def bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], dict[str, str], str]]:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a post")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "post.md").write_text("---\ntitle: [oops\n---\nbody\n")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should be")
    empty = tmp_path / "empty"
    empty.mkdir()
    return {
        "missing path": (["generate", str(tmp_path / "nope")], {}, "no such file or directory"),
        "non-markdown file": (["generate", str(notes)], {}, "not a markdown file"),
        "directory without posts": (["generate", str(empty)], {}, "no markdown posts"),
        "broken front matter": (["generate", str(broken)], {}, "front matter is not valid YAML at line 2"),
        "unwritable data directory": (["generate", str(EXAMPLES)],
                                      {"BLOGIMG_STORAGE_PATH": str(blocker / "images")}, "is not writable"),
        "unwritable database directory": (["generate", str(EXAMPLES)],
                                          {"BLOGIMG_DATABASE_URL": f"sqlite+aiosqlite:///{blocker}/db/x.db"},
                                          "cannot be created"),
        "bad setting": (["generate", str(EXAMPLES)], {"BLOGIMG_MAX_CONCURRENT": "lots"}, "BLOGIMG_MAX_CONCURRENT"),
        "unknown provider": (["generate", str(EXAMPLES), "--providers", "dalle"], {}, "unknown provider 'dalle'"),
    }


@pytest.mark.parametrize("case", ["missing path", "non-markdown file", "directory without posts", "broken front matter",
                                  "unwritable data directory", "unwritable database directory", "bad setting",
                                  "unknown provider"])
def test_bad_input_gets_one_clear_line_and_a_non_zero_exit(tmp_path: Path, case: str) -> None:
    arguments, environment, message = bad_inputs(tmp_path)[case]
    result = run_cli(*arguments, data=tmp_path / "data", cwd=tmp_path, **environment)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]
    assert "Traceback" not in result.stderr + result.stdout

