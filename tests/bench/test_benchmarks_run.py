"""Every benchmark runs once on a tiny input, so none can rot. These check that they run and
report, never how fast anything is."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from bench.common import RESULTS, render_report

from bench import api, database, imaging, imaging_bound, imaging_slope, orchestration
from tests.postgres import server_url


def result(name: str) -> dict:
    return json.loads((RESULTS / "tiny" / f"{name}.json").read_text())


def test_orchestration_benchmark_runs() -> None:
    from blogimg.imaging.process import process_image
    from blogimg.pipeline import worker

    orchestration.main(["--tiny"])
    assert worker.process_image is process_image  # the benchmark's measuring wrapper is gone again
    data = result("orchestration")
    assert [c["target"] for c in data["comparisons"]] == ["≥ 0.95", "≤ 5 ms", None]
    assert all(c["ratio"] > 0 for c in data["comparisons"]) and data["machine"]["libvips"]


def test_database_benchmark_runs() -> None:
    server_url()  # skips (or, in CI, fails) without a PostgreSQL server
    database.main(["--tiny"])
    data = result("database")
    engines = {c["what"].split(",")[0] for c in data["comparisons"]}
    assert "SQLite" in engines and "PostgreSQL" in engines  # CI provides PostgreSQL; never skipped there
    assert all(c["ours"]["runs"] >= 3 for c in data["comparisons"])


def test_imaging_benchmark_runs() -> None:
    if not (shutil.which("node") and shutil.which("npm")):
        message = "Node.js and npm are needed for the sharp side of the imaging benchmark"
        if os.environ.get("BLOGIMG_TEST_REQUIRE_NODE"):
            pytest.fail(message)
        pytest.skip(message)
    imaging.main(["--tiny"])
    data = result("imaging")
    by_name = {c["what"]: c for c in data["comparisons"]}
    # Identical settings must mean identical files: the same libvips, the same encoder parameters.
    for image_format in ("jpeg", "webp", "avif"):
        same = by_name[f"a. {image_format} bytes, identical settings"]
        assert same["ratio"] == 1.0 and same["note"] == "byte-identical files", same
    assert all(c["ours"]["median"] > 0 and c["baseline"]["median"] > 0 for c in data["comparisons"])
    details = data["details"]
    corpus = details["corpus"]
    assert set(corpus) == {"photo", "art", "card"} and all(corpus.values()), corpus
    images = {name for names in corpus.values() for name in names}
    # Every side's master and both variant formats are scored for every image, by both metrics.
    scores = details["scores"]
    scored = {(s["image"], s["side"], s["deliverable"]) for s in scores}
    assert scored == {(i, side, d) for i in images for side in ("blogimg", "sharp", "pillow")
                      for d in ("master", "webp", "avif")}
    assert all(0 < s["reference"] <= 100 and 0 < s["fast"] <= 100 and s["bytes_total"] >= s["bytes_scored"] > 0
               for s in scores)
    # The test against sharp is judged per deliverable over the whole corpus.
    judged = [c for c in data["comparisons"] if c["target"] and "bytes, production settings" in c["what"]]
    assert len(judged) == 3 and all(isinstance(c["met"], bool) for c in judged)
    tables = {table["title"].split(":")[0]: table for table in details["tables"]}
    assert set(tables) == {"Production settings", "At equal score image by image", "Metric agreement"}
    for table in tables.values():
        assert table["rows"] and all(len(row) == len(table["header"]) for row in table["rows"])
    production = tables["Production settings"]["rows"]
    assert {(row[1], row[2]) for row in production} == {(subset, side) for subset in ("all", "photo", "art", "card")
                                                         for side in ("blogimg", "sharp", "pillow")}
    equal = tables["At equal score image by image"]["rows"]
    assert {row[1] for row in equal} == {"all", "photo", "art", "card"}
    assert any("mozjpeg" in row[2] for row in equal) and all(row[4] > 0 and row[5] > 0 for row in equal)
    agreement = {(row[0], row[1]): row for row in tables["Metric agreement"]["rows"]}
    for subset in ("all", "photo", "art", "card"):
        row = agreement[("any deliverable", subset)]
        assert row[2] > 0 and 0 <= row[3] <= row[4] and -1 <= row[5] <= 1, row
    assert agreement[("any deliverable", "all")][2] == len(scores)
    assert details["notes"]


def test_allocation_bound_runs() -> None:
    if not (RESULTS / "tiny" / "imaging.json").is_file():
        test_imaging_benchmark_runs()  # the bound is taken against its scored files (skips without Node.js)
    imaging_bound.main(["--tiny", "--fresh"])  # swept, not read from a cache
    details = result("imaging_bound")["details"]
    encoders = {encoder.name for encoder in imaging_bound.ENCODERS if imaging_bound.available(encoder)}
    assert details["curves"] and all(set(curves) == encoders for curves in details["curves"].values())
    for curves in details["curves"].values():
        assert all(size > 0 and 0 < score <= 100 for points in curves.values() for _, size, score in points)
    assert details["cached_sweeps"] == {"scored": 0, "probe": 0}  # --fresh: everything swept
    figures = details["figures"]
    assert {(f["deliverable"], f["set"]) for f in figures} >= {(d, "all") for d in ("master", "webp", "avif")}
    for figure in figures:  # a lower bound, under a choice that meets both of the conditions
        choice = figure["choice"]
        if choice["feasible"]:
            assert choice["mean"] >= figure["needed_mean"] and choice["lowest"] >= figure["needed_lowest"], figure
            assert 0 < figure["bound"] <= choice["bytes"], figure
    assert all(f["choice"]["feasible"] for f in figures if f["set"] == "all" and f["production"]), figures
    table, probe, simulated = details["tables"]
    assert len(table["rows"]) == len(figures) and all(len(row) == len(table["header"]) for row in table["rows"])
    # The probe is compared for production's encoder of each deliverable, over the whole corpus and per category.
    assert {(row[0], row[1]) for row in probe["rows"] if row[1] == "all"} == {
        ("master (full size)", "all"), ("WebP variants", "all"), ("AVIF variants", "all")}
    assert all(len(row) == len(probe["header"]) and row[2] > 0 for row in probe["rows"])
    # The simulated search: a row per production encoder and floor, "yes" only where both conditions hold.
    assert len(simulated["rows"]) == 3 * len(imaging_slope.FLOORS)
    for row in simulated["rows"]:
        assert len(row) == len(simulated["header"]), row
        if row[-1] == "yes":
            (mean, needed_mean), (lowest, needed_lowest) = (map(float, cell.split(" / ")) for cell in row[5:7])
            assert mean >= needed_mean and lowest >= needed_lowest and row[4] <= 0.80, row
    assert len(details["notes"]) >= 3


def test_api_benchmark_runs() -> None:
    api.main(["--tiny"])
    data = result("api")
    runs = data["details"]["runs"]
    assert all(run["requests"] > 0 and run["errors"] == 0 for side in runs.values() for run in side)
    assert data["comparisons"][0]["target"] == "≥ 0.7" and data["comparisons"][0]["ratio"] > 0


def test_report_renders_from_results() -> None:
    text = render_report()
    assert text.startswith("# Benchmarks")
