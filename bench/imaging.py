"""Benchmark 1: blogimg's imaging against sharp (Node.js, the same libvips) and plain Pillow.

Each side runs as its own process per pass (bench/imaging_side.py, bench/sharp/run.mjs), so its
peak RSS is its own; passes are interleaved blogimg, sharp, Pillow, and ratios are medians of the
per-pass ratios. Both libvips sides get two threads (VIPS_CONCURRENCY / sharp.concurrency,
blogimg's encoder pool / libuv's pool); Pillow's AVIF encoder gets two. The corpus
(bench/imaging_corpus.py) has photographs, synthetic art and `card` output; every table reports
them apart as well as together.

a. Identical settings over the whole corpus: the same deliverables with every encoder parameter
   equal, so blogimg and sharp must produce byte-identical files and any time difference is
   overhead one of them adds. AVIF runs at effort 0 here: the encoder's own time is the same on
   both sides, and a fast encoder leaves overhead nowhere to hide. Also each deliverable alone on
   a subset of the corpus.
b. Production settings over the whole corpus: blogimg's defaults (its quality search included)
   against sharp's defaults for the same deliverables, and plain Pillow. Every master and the
   768-wide WebP and AVIF are scored with the reference SSIMULACRA2 package against the source
   resized the same way (bench/imaging_quality.py); "equal quality" is the issue's: blogimg's mean
   at least the other's minus 0.5 and its lowest at least the other's lowest.
c. At equal score image by image (bench/imaging_equal.py): blogimg's encoders at the lowest
   quality that reaches each sharp or Pillow file's own score; jpegli against mozjpeg.
d. Metric agreement: blogimg's fast SSIMULACRA2 against the reference on every pair scored in (b).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import ROOT, Comparison, Measure, write_result
from bench.imaging_corpus import CATEGORIES, build, category, subset
from bench.imaging_equal import equal_score_table, match_all, ratios
from bench.imaging_notes import notes
from bench.imaging_quality import (
    BYTES_TARGET,
    DELIVERABLES,
    LABELS,
    SAME_MEAN,
    Scored,
    agreement_table,
    fast_metric,
    production_table,
    score_kept,
    summary,
    verdict,
)

SHARP = ROOT / "bench" / "sharp"
SIDES = ("blogimg", "sharp", "pillow")
IDENTICAL_AVIF_EFFORT = 0


@dataclass
class Pass:
    seconds: float
    images: int
    bytes: dict[str, int]
    by_format: dict[str, float]
    rss_mb: float
    digests: dict[str, str]


def node() -> str:
    """The Node.js binary, with sharp installed from the pinned lock file on first use."""
    node_binary, npm = shutil.which("node"), shutil.which("npm")
    if not node_binary or not npm:
        raise SystemExit("bench.imaging: the sharp side needs Node.js 20+ and npm on PATH")
    if not (SHARP / "node_modules" / "sharp" / "package.json").is_file():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=SHARP, check=True)
    return node_binary


def run_pass(side: str, mode: str, corpus: Path, *, effort: int, keep: Path | None = None) -> Pass:
    if side == "sharp":
        command = [node(), str(SHARP / "run.mjs"), mode, str(corpus)]
    else:
        command = [sys.executable, "-m", "bench.imaging_side", side, mode, str(corpus)]
    command += ["--avif-effort", str(effort), *(["--keep", str(keep)] if keep else [])]
    environment = os.environ | {"VIPS_CONCURRENCY": "2", "UV_THREADPOOL_SIZE": "2"}
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=errors)
        output = process.stdout.read()
        # wait4, not wait: its resource usage is this child's alone, peak RSS included.
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        process.stdout.close()
        if process.returncode != 0:
            errors.seek(0)
            raise SystemExit(f"bench.imaging: {side} {mode} failed:\n{errors.read().decode(errors='replace')[-2000:]}")
    result = json.loads(output)
    # The side's own high-water mark (VmHWM): wait4's ru_maxrss starts from the parent's at fork, so a
    # small side run from a large parent (the test suite) would report the parent's size.
    peak_kb = result.get("peak_rss_kb") or usage.ru_maxrss
    return Pass(result["seconds"], result["images"], result["bytes"], result.get("by_format", {}),
                peak_kb / 1024, result.get("digests", {}))


def interleaved(mode: str, corpus: Path, runs: int, *, effort: int, keep: Path | None = None,
                sides: tuple[str, ...] = SIDES) -> dict[str, list[Pass]]:
    passes: dict[str, list[Pass]] = {side: [] for side in sides}
    for run in range(runs):
        for side in sides:
            # Outputs are deterministic, so the first pass's are kept for the quality metric.
            passes[side].append(run_pass(side, mode, corpus, effort=effort,
                                         keep=keep / side if keep and run == 0 else None))
    return passes


def speed(passes: dict[str, list[Pass]], what: str, baseline: str, target: str | None, goal: float | None,
          key=lambda p: p.seconds, note: str = "") -> Comparison:
    """images/s of blogimg against ``baseline``; the ratio is the median of per-run ratios."""
    def rate(side: str) -> Measure:
        return Measure(side, "images/s", [p.images / key(p) for p in passes[side]])

    ratio = statistics.median(key(b) / key(o) for o, b in zip(passes["blogimg"], passes[baseline], strict=True))
    return Comparison(what, ours=rate("blogimg").summary(), baseline=rate(baseline).summary(), ratio=ratio,
                      ratio_meaning=f"blogimg images/s ÷ {baseline}'s", target=target,
                      met=None if goal is None else ratio >= goal, note=note)


def memory(passes: dict[str, list[Pass]], what: str, baseline: str) -> Comparison:
    ours = Measure("blogimg", "MB", [p.rss_mb for p in passes["blogimg"]])
    theirs = Measure(baseline, "MB", [p.rss_mb for p in passes[baseline]])
    return Comparison(what, ours=ours.summary(), baseline=theirs.summary(), ratio=ours.median / theirs.median,
                      ratio_meaning=f"blogimg peak RSS ÷ {baseline}'s")


def sizes(passes: dict[str, list[Pass]], what: str, baseline: str, image_format: str) -> Comparison:
    """Bytes of one format with identical settings; against sharp, whether the files are identical."""
    ours, theirs = passes["blogimg"][0].bytes.get(image_format, 0), passes[baseline][0].bytes.get(image_format, 0)
    note = ""
    if baseline == "sharp":
        same = passes["blogimg"][0].digests.get(image_format) == passes[baseline][0].digests.get(image_format)
        note = "byte-identical files" if same else "the files differ: the settings are not identical"
    return Comparison(what, ours={"median": ours / 1024, "unit": "KiB"}, baseline={"median": theirs / 1024, "unit": "KiB"},
                      ratio=ours / theirs if theirs else float("nan"), ratio_meaning=f"blogimg bytes ÷ {baseline}'s",
                      note=note)


def at_equal_quality(scored: list[Scored], deliverable: str, baseline: str) -> Comparison:
    """Whole-corpus bytes of one deliverable at the issue's "equal quality" (the target against sharp)."""
    ours, theirs = summary(scored, "blogimg", deliverable, "all"), summary(scored, baseline, deliverable, "all")
    assert ours and theirs, f"no {deliverable} files scored"
    judged = verdict(ours, theirs)
    note = (f"SSIMULACRA2 mean {ours['mean']:.2f} vs {theirs['mean']:.2f}, lowest {ours['lowest']:.2f} "
            f"({ours['lowest_image']}) vs {theirs['lowest']:.2f} ({theirs['lowest_image']})")
    target = (f"≤ {BYTES_TARGET}, mean ≥ {baseline}'s − {SAME_MEAN}, lowest ≥ {baseline}'s lowest"
              if baseline == "sharp" else None)
    return Comparison(f"b. {LABELS[deliverable]} bytes, production settings, whole corpus, against {baseline}",
                      ours={"median": ours["bytes"] / 1024, "unit": "KiB"},
                      baseline={"median": theirs["bytes"] / 1024, "unit": "KiB"}, ratio=judged["ratio"],
                      ratio_meaning=f"blogimg bytes ÷ {baseline}'s", target=target,
                      met=judged["met"] if target else None, note=note)


def progress(message: str) -> None:
    print(f"imaging: {message}", file=sys.stderr, flush=True)  # the full run takes about 25 minutes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="one short run, to prove the benchmark works")
    arguments = parser.parse_args(argv)
    runs = 1 if arguments.tiny else 3
    files = build(tiny=arguments.tiny)
    corpus = files[0].parent
    names = [f.name for f in files]
    # Every 13th image: a photo and a card at 1024×1024 and a photo at 1536×1024 (tiny: one of each kind).
    small = subset(files, 1 if arguments.tiny else 13, "subset", count=3)
    count = len(files)
    seconds: dict[str, float] = {}

    started = time.perf_counter()
    # Two identical-settings passes (three of the rest): (a)'s ratios are steady, and the full run must
    # leave time for (b)'s scoring and (c)'s searches within about 25 minutes.
    identical = interleaved("identical", corpus, min(runs, 2), effort=IDENTICAL_AVIF_EFFORT)
    alone = interleaved("formats", small, runs, effort=IDENTICAL_AVIF_EFFORT, sides=("blogimg", "sharp"))
    seconds["a"] = time.perf_counter() - started
    progress(f"(a) done in {seconds['a']:.0f} s")
    with tempfile.TemporaryDirectory() as kept:
        started = time.perf_counter()
        production = interleaved("production", corpus, runs, effort=4, keep=Path(kept), sides=("blogimg", "sharp"))
        # Pillow is here for its files' bytes and scores: one pass, as its speed is compared in (a).
        production |= interleaved("production", corpus, 1, effort=4, keep=Path(kept), sides=("pillow",))
        seconds["b passes"] = time.perf_counter() - started
        progress(f"(b) passes done in {seconds['b passes']:.0f} s; scoring {count} images × 3 sides")
        started = time.perf_counter()
        scored = score_kept(corpus, names, Path(kept), SIDES)
        seconds["b scoring"] = time.perf_counter() - started
        progress(f"(b) scoring done in {seconds['b scoring']:.0f} s; searching at equal score")
    started = time.perf_counter()
    matches = match_all(scored, ("sharp", "pillow"), corpus_folder=str(corpus))
    seconds["c searches"] = time.perf_counter() - started
    metric_name, _ = fast_metric()

    comparisons = [
        speed(identical, f"a. identical settings, whole job, {count} images", "sharp", "≥ 1.0", 1.0),
        *(speed(alone, f"a. identical settings, {name} alone, {alone['blogimg'][0].images} images", "sharp",
                "≥ 1.0", 1.0, key=lambda p, name=name: p.by_format[name]) for name in ("jpeg", "webp", "avif", "thumbnail")),
        memory(identical, "a. peak RSS, whole job", "sharp"),
        *(sizes(identical, f"a. {name} bytes, identical settings", "sharp", name) for name in ("jpeg", "webp", "avif")),
        speed(identical, f"a. whole job against plain Pillow, {count} images", "pillow", None, None,
              note="Pillow has no trellis quantisation, smart subsampling or saliency crop: it does less work"),
        speed(production, f"b. production settings, whole job, {count} images", "sharp", "≥ 1.2", 1.2),
        memory(production, "b. peak RSS, production settings", "sharp"),
        *(at_equal_quality(scored, deliverable, "sharp") for deliverable in DELIVERABLES),
        *(at_equal_quality(scored, deliverable, "pillow") for deliverable in DELIVERABLES),
    ]
    tables = [production_table(scored, ("sharp", "pillow")), equal_score_table(matches, metric_name),
              agreement_table(scored, metric_name)]
    equal = ratios(matches)
    details = {"corpus": {kind: [n for n in names if category(n) == kind] for kind in CATEGORIES},
               "subset": json.loads((small / "manifest.json").read_text()), "seconds": seconds,
               "scores": [vars(s) for s in scored], "equal_score": equal, "fast_metric": metric_name,
               "tables": tables}
    details["notes"] = notes(comparisons, details, scored, matches)
    path = write_result("imaging", "Imaging against sharp and Pillow", comparisons, details, tiny=arguments.tiny)
    first = comparisons[0]
    print(f"imaging: identical settings {first.ratio:.2f}× sharp's images/s; "
          f"{', '.join(f'{k} {v:.0f} s' for k, v in seconds.items())} → {path}")


if __name__ == "__main__":
    main()
