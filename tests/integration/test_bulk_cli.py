"""The bulk and analytics commands as a user runs them: ``stats --by`` (tables and JSON),
``remake-variants``, ``prune-events``, ``delete-images`` and ``retry --post``."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support import query, referenced_keys, run_cli, stored_files, write_posts

FAST = {"BLOGIMG_COVER_SIZE": "320x200", "BLOGIMG_INLINE_SIZE": "200x200", "BLOGIMG_VARIANT_WIDTHS": "96",
        "BLOGIMG_AVIF_EFFORT": "0"}


def test_the_bulk_and_analytics_commands(tmp_path: Path) -> None:
    data, database = tmp_path / "data", tmp_path / "data" / "blogimg.db"
    made = run_cli("generate", str(write_posts(tmp_path / "posts", 2, markers=1)), "--providers", "card",
                   data=data, cwd=tmp_path, **FAST)
    assert made.returncode == 0, made.stderr

    plain = run_cli("stats", data=data, cwd=tmp_path, **FAST)
    assert plain.returncode == 0 and "provider calls" in plain.stdout and "spend by" not in plain.stdout
    by_provider = run_cli("stats", "--by", "provider", data=data, cwd=tmp_path, **FAST)
    assert by_provider.returncode == 0, by_provider.stderr
    assert "spend by provider" in by_provider.stdout and "card" in by_provider.stdout
    assert "storage by format" in by_provider.stdout and "no rated images" in by_provider.stdout
    as_json = run_cli("stats", "--by", "month", "--json", data=data, cwd=tmp_path, **FAST)
    report = json.loads(as_json.stdout)
    assert report["grouping"] == "month" and report["total"]["accepted_images"] == 4
    assert report["total"]["regeneration_rate"] == 0
    bad = run_cli("stats", "--by", "week", data=data, cwd=tmp_path, **FAST)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr

    calls = query(database, "SELECT count(*), sum(cost_usd) FROM generation_attempts")
    remade = run_cli("remake-variants", data=data, cwd=tmp_path, **{**FAST, "BLOGIMG_VARIANT_WIDTHS": "64,96"})
    assert remade.returncode == 0, remade.stderr + remade.stdout
    assert "added 8 variants to 4 of 4 images" in remade.stdout and "no provider was called" in remade.stdout
    assert query(database, "SELECT count(*) FROM image_variants WHERE width = 64") == [(8,)]
    assert query(database, "SELECT count(*), sum(cost_usd) FROM generation_attempts") == calls
    assert referenced_keys(database) <= stored_files(data / "images")

    pruned = run_cli("prune-events", "--days", "1", data=data, cwd=tmp_path, **FAST)
    assert pruned.returncode == 0 and "deleted 0 events and finished webhook deliveries older than 1 days" in pruned.stdout

    nothing_failed = run_cli("retry", "--post", "1", data=data, cwd=tmp_path, **FAST)
    assert nothing_failed.returncode == 2 and "no failed image in post 1" in nothing_failed.stderr
    both = run_cli("retry", "--post", "1", "--failed", data=data, cwd=tmp_path, **FAST)
    assert both.returncode == 2 and "one of them" in both.stderr

    dry = run_cli("delete-images", "--post", "1", data=data, cwd=tmp_path, **FAST)
    assert dry.returncode == 0 and "post 1 has 2 images" in dry.stdout and "--yes" in dry.stdout
    assert query(database, "SELECT count(*) FROM generated_images") == [(4,)]
    gone = run_cli("delete-images", "--post", "1", "--yes", data=data, cwd=tmp_path, **FAST)
    assert gone.returncode == 0, gone.stderr
    assert "deleted 2 images of post 1" in gone.stdout
    assert query(database, "SELECT count(*) FROM generated_images WHERE post_id = 1") == [(0,)]
    assert referenced_keys(database) <= stored_files(data / "images")  # nothing points at a missing file
    unknown = run_cli("delete-images", "--post", "99", data=data, cwd=tmp_path, **FAST)
    assert unknown.returncode == 2 and "no post with id 99" in unknown.stderr
