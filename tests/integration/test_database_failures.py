"""A database that refuses a write, and a disk that is full: one clear line, no SQL, no post.

A trigger makes the real database refuse a statement, so the error comes from the driver as it
would in production. A full disk is a real small tmpfs, mounted in a mount namespace of the
test's own (``unshare``), so nothing outside the test ever sees it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from blogimg.config import Settings
from tests.support import BLOGIMG, cli_environment, on_both_engines, query, run_cli, write_posts

SECRET = "an unpublished sentence only this post has"  #: must never reach a message
REFUSAL = "refused by a test trigger"
FAST_IMAGES: dict[str, Any] = {"BLOGIMG_VARIANT_WIDTHS": "48", "BLOGIMG_VARIANT_FORMATS": "webp", "BLOGIMG_AVIF_EFFORT": "0"}


def write_secret_post(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "secret.md").write_text(
        f"---\ntitle: Secret\n---\n{SECRET}.\n\n<!-- image: a lighthouse at dusk -->\n")
    return directory


def refuse(database_url: str, table: str, *, when_status: str | None = None) -> None:
    """Make the database refuse inserts into ``table`` (or updates setting ``status``)."""
    if database_url.startswith("sqlite"):
        event = f"UPDATE OF status ON {table} WHEN NEW.status = '{when_status}'" if when_status \
            else f"INSERT ON {table}"
        path = database_url.split(":///", 1)[1]
        with contextlib.closing(sqlite3.connect(path)) as connection:
            connection.execute(f"CREATE TRIGGER refuse BEFORE {event} BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END")
            connection.commit()
        return
    import psycopg
    from sqlalchemy.engine import make_url

    condition = f"NEW.status = '{when_status}'" if when_status else "true"
    with psycopg.connect(make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False),
                         autocommit=True) as connection:
        connection.execute(f"CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                           f"IF {condition} THEN RAISE EXCEPTION '{REFUSAL}'; END IF; RETURN NEW; END $$")
        connection.execute(f"CREATE TRIGGER refuse BEFORE {'UPDATE' if when_status else 'INSERT'} ON {table} "
                           "FOR EACH ROW EXECUTE FUNCTION refuse()")


@on_both_engines
def test_a_refused_write_is_one_line_without_the_statement_or_the_post(tmp_path: Path, settings: Settings) -> None:
    data, url = tmp_path / "data", settings.database_url
    assert run_cli("init", data=data, cwd=tmp_path, BLOGIMG_DATABASE_URL=url).returncode == 0
    refuse(url, "blog_posts")
    posts = write_secret_post(tmp_path / "posts")

    result = run_cli("generate", str(posts), "--providers", "card", data=data, cwd=tmp_path, BLOGIMG_DATABASE_URL=url)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith("error: unexpected ") and REFUSAL in lines[0], lines[0]
    for leak in (SECRET, "INSERT", "[SQL", "[parameters", "blog_posts ("):
        assert leak not in result.stderr + result.stdout, f"{leak!r} in {result.stderr[-2000:]}"

    # The traceback --debug asks for shows the statement, but never the values it carried.
    debugged = run_cli("generate", str(posts), "--providers", "card", "--debug", data=data, cwd=tmp_path,
                       BLOGIMG_DATABASE_URL=url)
    assert "Traceback" in debugged.stderr and REFUSAL in debugged.stderr, debugged.stderr[-2000:]
    assert SECRET not in debugged.stderr + debugged.stdout


@on_both_engines
def test_an_image_the_database_refuses_to_finish_keeps_one_line_on_its_row(tmp_path: Path, settings: Settings) -> None:
    data, url = tmp_path / "data", settings.database_url
    assert run_cli("init", data=data, cwd=tmp_path, BLOGIMG_DATABASE_URL=url).returncode == 0
    refuse(url, "generated_images", when_status="succeeded")

    result = run_cli("generate", str(write_secret_post(tmp_path / "posts")), "--providers", "card", data=data,
                     cwd=tmp_path, BLOGIMG_DATABASE_URL=url, **FAST_IMAGES)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "[SQL" not in result.stdout + result.stderr and "UPDATE" not in result.stdout + result.stderr
    if url.startswith("sqlite"):
        rows = query(data / "blogimg.db", "SELECT status, error_code, error_message FROM generated_images")
    else:
        import psycopg
        from sqlalchemy.engine import make_url

        with psycopg.connect(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)) as c:
            rows = c.execute("SELECT status, error_code, error_message FROM generated_images").fetchall()
    assert len(rows) == 2 and all(status == "failed" and code == "internal" for status, code, _ in rows), rows
    assert {message for _, _, message in rows} <= {f"IntegrityError: {REFUSAL}", f"RaiseException: {REFUSAL}"}, rows


# --- a full disk ---------------------------------------------------------------------------------


def small_disk_shell(script: str, environment: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """Run ``script`` with sh in a mount namespace of its own, where it may mount a small tmpfs."""
    # CI must try a full disk, never skip it (.ci/run sets this); a user's machine may not allow it.
    cannot = pytest.fail if os.environ.get("BLOGIMG_TEST_REQUIRE_FULL_DISK") else pytest.skip
    if shutil.which("unshare") is None:
        cannot("a full disk is made with unshare(1) and a tmpfs; unshare is not installed")
    probe = subprocess.run(["unshare", "--mount", "--map-root-user", "sh", "-c",
                            f"mount -t tmpfs -o size=64k tmpfs {cwd}"], capture_output=True, text=True)
    if probe.returncode != 0:
        cannot(f"cannot mount a small tmpfs in a mount namespace here: {probe.stderr.strip()}")
    return subprocess.run(["unshare", "--mount", "--map-root-user", "sh", "-c", script], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=240)


def test_a_full_disk_under_the_database_is_named_and_nothing_is_lost(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    posts = tmp_path / "posts"
    posts.mkdir()
    for number in range(6):  # posts too large for the room left in the WAL
        (posts / f"long-{number}.md").write_text(
            f"---\ntitle: Long {number}\n---\n" + f"paragraph {number} " * 3000 + "\n\n<!-- image: a kite -->\n")
    environment = cli_environment(data, BLOGIMG_STORAGE_PATH=str(tmp_path / "images"), **FAST_IMAGES)
    blogimg = " ".join(f"'{part}'" for part in BLOGIMG)
    result = small_disk_shell(f"""
        mount -t tmpfs -o size=8m tmpfs '{data}' || exit 90
        {blogimg} init >/dev/null || exit 91
        dd if=/dev/zero of='{data}/filler' bs=4096 2>/dev/null
        truncate -s -48k '{data}/filler'
        {blogimg} generate '{posts}' --providers card >'{tmp_path}/full.out' 2>'{tmp_path}/full.err'
        echo "full=$?"
        rm '{data}/filler'
        {blogimg} generate '{posts}' --providers card >'{tmp_path}/again.out' 2>'{tmp_path}/again.err'
        echo "again=$?"
        {blogimg} stats >'{tmp_path}/stats.out' 2>&1
        cp '{data}/blogimg.db' '{tmp_path}/after.db'
    """, environment, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    codes = dict(line.split("=") for line in result.stdout.split())
    full_error = (tmp_path / "full.err").read_text()
    lines = [line for line in full_error.splitlines() if line.strip()]
    assert codes["full"] == "2" and len(lines) == 1, full_error[-2000:]
    assert f"the disk holding the database {data / 'blogimg.db'} is full" in lines[0], lines[0]
    assert "unexpected" not in lines[0] and "[SQL" not in lines[0], lines[0]
    # Space freed, the same command makes every image: none was failed for the full disk.
    assert codes["again"] == "0", (tmp_path / "again.err").read_text()[-2000:]
    assert query(tmp_path / "after.db", "SELECT status, count(*) FROM generated_images GROUP BY status") == [
        ("succeeded", 12)]


def test_a_full_disk_under_the_storage_folder_is_named_and_the_images_stay_queued(tmp_path: Path) -> None:
    data, images = tmp_path / "data", tmp_path / "images"
    images.mkdir()
    posts = write_posts(tmp_path / "posts", 3, markers=2)  # 9 images, far more than the disk holds
    environment = cli_environment(data, BLOGIMG_STORAGE_PATH=str(images), **FAST_IMAGES)
    blogimg = " ".join(f"'{part}'" for part in BLOGIMG)
    result = small_disk_shell(f"""
        mount -t tmpfs -o size=96k tmpfs '{images}' || exit 90
        {blogimg} generate '{posts}' --providers card >'{tmp_path}/full.out' 2>'{tmp_path}/full.err'
        echo "full=$?"
        cp '{data}/blogimg.db' '{tmp_path}/full.db'
        mount -o remount,size=64m '{images}' || exit 91
        {blogimg} generate '{posts}' --providers card >'{tmp_path}/again.out' 2>'{tmp_path}/again.err'
        echo "again=$?"
    """, environment, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    codes = dict(line.split("=") for line in result.stdout.split())
    full_error = (tmp_path / "full.err").read_text()
    lines = [line for line in full_error.splitlines() if line.strip()]
    assert codes["full"] == "2" and len(lines) == 1, full_error[-2000:]
    assert f"the disk of the storage folder {images} is full" in lines[0], lines[0]
    statuses = dict(query(tmp_path / "full.db", "SELECT status, count(*) FROM generated_images GROUP BY status"))
    assert "failed" not in statuses and statuses.get("queued", 0) > 0, statuses
    assert codes["again"] == "0", (tmp_path / "again.err").read_text()[-2000:]
    assert query(data / "blogimg.db", "SELECT status, count(*) FROM generated_images GROUP BY status") == [
        ("succeeded", 9)]
