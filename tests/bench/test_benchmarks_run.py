"""Every benchmark runs once on a tiny input, so none can rot. These check that they run and
report, never how fast anything is."""

from __future__ import annotations

import json

from bench.common import RESULTS, render_report

from bench import database, orchestration
from tests.postgres import server_url


def result(name: str) -> dict:
    return json.loads((RESULTS / "tiny" / f"{name}.json").read_text())


def test_orchestration_benchmark_runs() -> None:
    from blogimg.imaging.process import process_image
    from blogimg.pipeline import worker

    orchestration.main(["--tiny"])
    assert worker.process_image is process_image  # the benchmark's measuring wrapper is gone again
    data = result("orchestration")
    assert [c["target"] for c in data["comparisons"]] == ["≥ 0.95", "≤ 5 ms"]
    assert all(c["ratio"] > 0 for c in data["comparisons"]) and data["machine"]["libvips"]


def test_database_benchmark_runs() -> None:
    server_url()  # skips (or, in CI, fails) without a PostgreSQL server
    database.main(["--tiny"])
    data = result("database")
    engines = {c["what"].split(",")[0] for c in data["comparisons"]}
    assert "SQLite" in engines and "PostgreSQL" in engines  # CI provides PostgreSQL; never skipped there
    assert all(c["ours"]["runs"] >= 3 for c in data["comparisons"])


def test_report_renders_from_results() -> None:
    text = render_report()
    assert text.startswith("# Benchmarks")
