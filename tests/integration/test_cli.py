"""The real CLI as a subprocess: the demo, re-runs, and one clear line for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from blogimg.db.engine import alembic_config
from blogimg.providers.pricing import default_prices
from tests.support import EXAMPLES, query, referenced_keys, run_cli, stored_files


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
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert query(data / "blogimg.db", "SELECT version_num FROM alembic_version") == [(head,)]
    providers = run_cli("providers", data=data, cwd=tmp_path)
    assert providers.returncode == 0 and "card" in providers.stdout and "offline" in providers.stdout
    prices = default_prices()
    assert f"as of {prices.as_of}" in providers.stdout
    openai_high = sorted(p.usd for p in prices.image_prices("openai", "gpt-image-2") if p.quality == "high")
    assert f"${openai_high[0]:.3f}–${openai_high[-1]:.3f}" in providers.stdout
    unpriced = run_cli("providers", data=data, cwd=tmp_path, BLOGIMG_OPENAI_MODEL="chatgpt-image-latest")
    openai_row = next(line for line in unpriced.stdout.splitlines() if "openai" in line)
    assert "unknown" in openai_row and "$" not in openai_row
    listed = run_cli("providers", data=data, cwd=tmp_path, OPENAI_API_KEY="sk-test")
    assert "gpt-image-2.6-sunburst" in listed.stdout and "chatgpt-image-latest" in listed.stdout


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



@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::"])
def test_serve_refuses_an_open_address_without_keys(tmp_path: Path, host: str) -> None:
    refused = run_cli("serve", "--host", host, "--port", "1", data=tmp_path / "data", cwd=tmp_path, timeout=60)
    assert refused.returncode == 2 and "refusing to listen" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_serve_answers_and_its_embedded_worker_makes_the_images(tmp_path: Path) -> None:
    import json
    import socket
    import subprocess
    import time
    import urllib.request

    from tests.support import BLOGIMG, cli_environment

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = cli_environment(tmp_path / "data", BLOGIMG_API_KEYS="serve-key", BLOGIMG_AVIF_EFFORT="0",
                                  BLOGIMG_VARIANT_WIDTHS="64", BLOGIMG_COVER_SIZE="256x160",
                                  BLOGIMG_INLINE_SIZE="160x160")
    server = subprocess.Popen([*BLOGIMG, "serve", "--port", str(port)], cwd=tmp_path, env=environment,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"

    def call(method: str, path: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body else None,
                                         headers={"Authorization": "Bearer serve-key", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"null")

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert call("GET", "/healthz")["status"] == "ok"
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, server.stdout.read()
                time.sleep(0.2)
        post = call("POST", "/api/posts", {"markdown": "---\ntitle: Served\n---\n<!-- image: a tower -->\n", "enqueue": True})
        while not (batch := call("GET", f"/api/batches/{post['batch_id']}"))["done"]:
            assert time.monotonic() < deadline + 60
            time.sleep(0.2)
        assert batch["counts"]["succeeded"] == 2
        images = call("GET", f"/api/images/blog/{post['id']}")["items"]
        image = images[0]
        webp = next(variant for variant in image["variants"] if variant["format"] == "webp")
        with urllib.request.urlopen(base + webp["url"], timeout=10) as served:
            assert served.status == 200 and served.read()[:4] == b"RIFF"  # the WebP file, served under /files/
    finally:
        server.terminate()
        server.wait(timeout=30)


async def test_search_retry_and_cleanup_from_the_command_line(tmp_path: Path, settings) -> None:  # type: ignore[no-untyped-def]
    from blogimg.domain import Outcome
    from blogimg.pipeline.generate import generate
    from blogimg.testing import FakeProvider
    from tests.support import registry_with, write_posts

    data = tmp_path / "data"
    broken = FakeProvider("broken", script=lambda request, number: Outcome.INVALID)
    posts = write_posts(tmp_path / "posts", 2, markers=0)
    summary = await generate([posts], settings, providers=["broken"], registry=registry_with(broken))
    assert summary.failed == 2
    nothing = run_cli("retry", data=data, cwd=tmp_path)
    assert nothing.returncode == 2 and nothing.stderr.startswith("error: name the image ids")
    retried = run_cli("retry", "--failed", data=data, cwd=tmp_path, BLOGIMG_AVIF_EFFORT="0")
    assert retried.returncode == 0, retried.stderr
    assert query(data / "blogimg.db", "SELECT DISTINCT status, provider FROM generated_images") == [("succeeded", "card")]
    found = run_cli("search", "Post 1", data=data, cwd=tmp_path)
    assert found.returncode == 0 and "succeeded" in found.stdout and "Post 1" in found.stdout
    orphan = data / "images" / "zz" / "orphan.webp"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"x")
    report = run_cli("cleanup", data=data, cwd=tmp_path)
    assert "files with no row: 1" in report.stdout and "zz/orphan.webp" in report.stdout and orphan.exists()
    applied = run_cli("cleanup", "--apply", "--grace-seconds", "0", data=data, cwd=tmp_path)
    assert "deleted 1 files" in applied.stdout and not orphan.exists()
