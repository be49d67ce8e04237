"""Shared by every benchmark: repeated timing, the machine's description, JSON results, and
BENCHMARKS.md rendered from the JSON — so the numbers in the table are the ones the code made.

A benchmark compares blogimg with a named baseline *in the same run*, and reports medians of at
least five repetitions, their min–max, and the ratio. Absolute times on a shared machine are
noise; ratios of interleaved runs are not.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
REPORT = ROOT / "BENCHMARKS.md"


@dataclass
class Measure:
    """Repeated samples of one quantity (seconds, or any unit named in ``unit``)."""

    name: str
    unit: str
    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def summary(self) -> dict:
        return {"name": self.name, "unit": self.unit, "median": self.median, "min": min(self.samples),
                "max": max(self.samples), "runs": len(self.samples)}


@dataclass
class Comparison:
    """One line of a benchmark's table: ours against a baseline, and the target for the ratio."""

    what: str
    ours: dict
    baseline: dict
    ratio: float  #: defined per comparison (e.g. baseline time / our time: > 1 means we are faster)
    ratio_meaning: str
    target: str | None = None
    met: bool | None = None
    note: str = ""


def time_call(function: Callable[[], object]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def interleave(runs: int, **functions: Callable[[], float]) -> dict[str, list[float]]:
    """Run each function ``runs`` times, alternating, so drift hits every side alike."""
    samples: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(runs):
        for name, function in functions.items():
            samples[name].append(function())
    return samples


def machine() -> dict:
    import pyvips

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=False).stdout.strip()
    except OSError:
        commit = ""
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "libvips": f"{pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}",
            "platform": platform.platform(), "commit": commit,
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}


def write_result(name: str, title: str, comparisons: list[Comparison], details: dict | None = None,
                 tiny: bool = False) -> Path:
    """Save one benchmark's result as JSON (tiny runs go elsewhere: they prove it runs, not speed)."""
    directory = RESULTS / "tiny" if tiny else RESULTS
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps({"name": name, "title": title, "machine": machine(),
                                "comparisons": [asdict(c) for c in comparisons], "details": details or {}},
                               indent=2, default=str) + "\n")
    return path


def render_report() -> str:
    """BENCHMARKS.md from every full result in bench/results/."""
    results = [json.loads(path.read_text()) for path in sorted(RESULTS.glob("*.json"), key=_order)]
    lines = ["# Benchmarks", "",
             "Made by `make bench` from the JSON in `bench/results/`; do not edit by hand.",
             "Every line compares blogimg with a baseline run side by side in the same process or job;",
             "values are medians of the runs shown, with min–max. Ratios, not absolute times, are the result.", ""]
    targeted = [(result["title"], c) for result in results for c in result["comparisons"] if c["target"]]
    if targeted:
        met = sum(1 for _, c in targeted if c["met"])
        lines += [f"Targets met: {met} of {len(targeted)}. Missed:", ""]
        lines += [f"- {title}: {c['what']} — {_number(c['ratio'])} ({c['ratio_meaning']}), target {c['target']}"
                  for title, c in targeted if c["met"] is False] or ["- none"]
        lines.append("")
    for result in results:
        info = result["machine"]
        lines += [f"## {result['title']}", "",
                  f"{info['date']} · {info['cpu']} · {info['cores']} cores · Python {info['python']} · "
                  f"libvips {info['libvips']} · commit {info['commit']}", ""]
        if result["comparisons"]:  # a benchmark may report its own tables only
            lines += ["| comparison | blogimg | baseline | ratio | target | met |", "|---|---|---|---|---|---|"]
        for c in result["comparisons"]:
            met = {True: "yes", False: "**no**", None: "—"}[c["met"]]
            lines.append(f"| {c['what']} | {_cell(c['ours'])} | {_cell(c['baseline'])} | "
                         f"{_number(c['ratio'])} ({c['ratio_meaning']}) | {c['target'] or '—'} | {met} |")
        for table in result.get("details", {}).get("tables", []):  # a benchmark's own tables, as given
            lines += ["", f"**{table['title']}**", "", "| " + " | ".join(table["header"]) + " |",
                      "|" + "---|" * len(table["header"])]
            lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in table["rows"]]
        notes = [c for c in result["comparisons"] if c.get("note")]
        if notes:
            lines.append("")
            lines += [f"- {c['what']}: {c['note']}" for c in notes]
        if result.get("details", {}).get("notes"):
            lines.append("")
            lines += [f"- {note}" for note in result["details"]["notes"]]
        lines.append("")
    return "\n".join(lines)


def _order(path: Path) -> tuple[int, str]:
    # The order: imaging (and its allocation bound), orchestration, database, API; anything new after them.
    known = ["imaging", "imaging_bound", "orchestration", "database", "api"]
    return (known.index(path.stem) if path.stem in known else len(known), path.stem)


def _cell(summary: dict) -> str:
    if not summary:
        return "—"
    unit = summary.get("unit", "")
    if "min" in summary and summary.get("runs", 1) > 1:
        return f"{_number(summary['median'])} {unit} ({_number(summary['min'])}–{_number(summary['max'])}, n={summary['runs']})"
    return f"{_number(summary['median'])} {unit}"


def _number(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
