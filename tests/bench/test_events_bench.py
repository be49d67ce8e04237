"""bench/events.py runs once on a tiny input (20 clients, a 10-image batch), so it cannot rot.
It checks that the benchmark runs and reports, and that every client got every event; the
query-count ratio at this size is a handful of polls, so it is reported, not asserted."""

from __future__ import annotations

import json

from bench.common import RESULTS

from bench import events


def test_events_benchmark_runs() -> None:
    events.main(["--tiny"])
    data = json.loads((RESULTS / "tiny" / "events.json").read_text())
    rounds = [found for engine in data["details"]["rounds"].values() for found in engine]
    assert {(found["side"], found["clients"]) for found in rounds} >= {
        ("blogimg", 1), ("blogimg", 20), ("per-connection", 1), ("per-connection", 20)}
    for found in rounds:
        assert found["batch_done"] and found["batch_events"] == 30  # queued, running, succeeded × 10
        assert found["clients_with_every_event"] == found["clients"], found
    delivered = [c for c in data["comparisons"] if c["what"].endswith("exactly, in order")]
    assert delivered and all(c["met"] for c in delivered)
    assert all(c["ratio"] > 0 for c in data["comparisons"])
