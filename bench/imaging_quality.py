"""Perceptual scores for the imaging benchmark: every side's kept files against the source.

Judging is done by the reference ``ssimulacra2`` package (a NumPy port of libjxl's tool), the same
function for every side. Its reference image is the source resized by libvips (lanczos3) to the
file's own size, and every file is decoded by libvips (what a browser's decoders would give), so
both metrics below see exactly the same pixels. blogimg's own fast metric scores the same pairs, so
its agreement with the reference is measured on every pair the benchmark has anyway.

Files are compared per *deliverable*, keyed by role and not by format, because blogimg may write a
master as PNG or WebP for flat art: the master (full size), the WebP variants and the AVIF variants.
"""

from __future__ import annotations

import io
import multiprocessing
import statistics
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyvips

from bench.imaging_corpus import CATEGORIES, category

DELIVERABLES = ("master", "webp", "avif")
LABELS = {"master": "master (full size)", "webp": "WebP variants", "avif": "AVIF variants"}
SCORE_WIDTH = 768  #: the variant width scored (or the source's own, when it is narrower)
SETS = ("all", *CATEGORIES)
SAME_MEAN = 0.5  #: blogimg's mean may be this far below the baseline's and still count as equal
BYTES_TARGET = 0.80


def worker_pool(processes: int) -> ProcessPoolExecutor:
    """Worker processes started fresh, never forked: a fork of a process whose libvips (or any other)
    threads hold a lock copies the lock held, and the child waits on it for ever. Under pytest the
    earlier tests leave such threads, and a forked scorer hung CI's run until its 90 minutes ran out."""
    return ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"))


def fast_metric() -> tuple[str, Callable[[pyvips.Image, pyvips.Image], float]]:
    """blogimg's own SSIMULACRA2 (numpy, imaging/perceptual.py), or the reference package where the
    installed blogimg has none yet: then the "agreement" rows compare the reference with itself."""
    try:
        from blogimg.imaging.perceptual import ssimulacra2
    except ImportError:
        return "reference package (blogimg.imaging.perceptual not importable)", reference_score
    return "blogimg.imaging.perceptual.ssimulacra2", ssimulacra2


def reference_score(reference: pyvips.Image, distorted: pyvips.Image) -> float:
    from ssimulacra2 import compute_ssimulacra2

    def png(image: pyvips.Image) -> io.BytesIO:
        return io.BytesIO(image.pngsave_buffer(compression=0))

    return float(compute_ssimulacra2(png(reference), png(distorted)))


def rgb(image: pyvips.Image) -> pyvips.Image:
    """8-bit sRGB with three bands: both metrics' input."""
    if image.interpretation not in ("srgb", "rgb"):
        image = image.colourspace("srgb")
    if image.hasalpha():
        image = image.flatten(background=[255, 255, 255])
    return image.cast("uchar").copy_memory()


def reference_for(source: pyvips.Image, width: int, height: int) -> pyvips.Image:
    """The source resized by libvips to exactly ``width``×``height`` (lanczos3, as the sides do)."""
    if (width, height) == (source.width, source.height):
        return source
    return rgb(source.resize(width / source.width, vscale=height / source.height))


@dataclass
class Scored:
    """One kept file: its deliverable's bytes for this image (all widths), and its scores."""

    image: str
    category: str
    side: str
    deliverable: str
    width: int
    height: int
    bytes_total: int  #: every file of this deliverable for this image (the variants: all widths)
    bytes_scored: int  #: the one file scored
    reference: float
    fast: float
    reference_seconds: float
    fast_seconds: float
    megapixels: float


def files_of(folder: Path, deliverable: str) -> list[Path]:
    """The kept files of one deliverable, by role: ``master-W.*``, ``variant-W.webp|avif``."""
    if deliverable == "master":
        return sorted(folder.glob("master-*"))
    return sorted(folder.glob(f"variant-*.{deliverable}"))


def scored_width(source_width: int) -> int:
    return min(SCORE_WIDTH, source_width)


def score_file(source_path: str, distorted_path: str) -> tuple[float, float, float, float, int, int]:
    """Both metrics on one file against the resized source; runs in a worker process."""
    source = rgb(pyvips.Image.new_from_file(source_path))
    distorted = rgb(pyvips.Image.new_from_file(distorted_path))
    reference = reference_for(source, distorted.width, distorted.height)
    started = time.perf_counter()
    judged = reference_score(reference, distorted)
    middle = time.perf_counter()
    fast = fast_metric()[1](reference, distorted)
    ended = time.perf_counter()
    return judged, float(fast), middle - started, ended - middle, distorted.width, distorted.height


def score_kept(corpus: Path, names: Iterable[str], kept: Path, sides: Iterable[str], *,
               processes: int = 2) -> list[Scored]:
    """Score every side's master and its variants at SCORE_WIDTH, two files at a time."""
    jobs: list[tuple[str, str, str, str, int, int, int, Path]] = []
    for name in names:
        source = corpus / name
        width = scored_width(pyvips.Image.new_from_file(str(source)).width)
        for side in sides:
            folder = kept / side / source.stem
            for deliverable in DELIVERABLES:
                files = files_of(folder, deliverable)
                wanted = [f for f in files if deliverable == "master" or f.stem == f"variant-{width}"]
                if not wanted:
                    continue  # this side made no file for this deliverable: counted as missing
                total = sum(f.stat().st_size for f in files)
                jobs.append((name, category(name), side, deliverable, width, total,
                             wanted[0].stat().st_size, wanted[0]))
    with worker_pool(processes) as pool:
        results = list(pool.map(score_file, [str(corpus / j[0]) for j in jobs], [str(j[7]) for j in jobs]))
    scored = []
    for job, (judged, fast, judged_seconds, fast_seconds, width, height) in zip(jobs, results, strict=True):
        name, kind, side, deliverable, _, total, size, _ = job
        scored.append(Scored(name, kind, side, deliverable, width, height, total, size, judged, fast,
                             judged_seconds, fast_seconds, width * height / 1e6))
    return scored


def summary(scored: list[Scored], side: str, deliverable: str, subset: str) -> dict | None:
    rows = [s for s in scored if s.side == side and s.deliverable == deliverable
            and subset in ("all", s.category)]
    if not rows:
        return None
    scores = [s.reference for s in rows]
    return {"files": len(rows), "bytes": sum(s.bytes_total for s in rows), "mean": statistics.mean(scores),
            "lowest": min(scores), "lowest_image": rows[scores.index(min(scores))].image}


def verdict(ours: dict, theirs: dict) -> dict:
    """The issue's test of "smaller at equal quality" for one deliverable over one set of images."""
    ratio = ours["bytes"] / theirs["bytes"] if theirs["bytes"] else float("nan")
    mean_ok = ours["mean"] >= theirs["mean"] - SAME_MEAN
    lowest_ok = ours["lowest"] >= theirs["lowest"]
    return {"ratio": ratio, "bytes_ok": ratio <= BYTES_TARGET, "mean_ok": mean_ok, "lowest_ok": lowest_ok,
            "met": ratio <= BYTES_TARGET and mean_ok and lowest_ok}


def production_table(scored: list[Scored], baselines: Iterable[str]) -> dict:
    """The bytes-and-scores table: per deliverable, set of images and side, with blogimg's verdict."""
    rows = []
    for deliverable in DELIVERABLES:
        for subset in SETS:
            ours = summary(scored, "blogimg", deliverable, subset)
            if ours is None:
                continue
            rows.append(_row(deliverable, subset, "blogimg", ours, None))
            for baseline in baselines:
                theirs = summary(scored, baseline, deliverable, subset)
                if theirs is not None:
                    rows.append(_row(deliverable, subset, baseline, theirs, verdict(ours, theirs)))
    return {"title": "Production settings: bytes and SSIMULACRA2 (reference package) per deliverable",
            "header": ["deliverable", "images", "side", "files", "KiB", "mean score", "lowest score",
                       "blogimg bytes ÷ this side's", "blogimg met"],
            "rows": rows}


def _row(deliverable: str, subset: str, side: str, figures: dict, judged: dict | None) -> list:
    met = "—"
    if judged is not None:
        failed = [what for what, ok in (("bytes", judged["bytes_ok"]), ("mean", judged["mean_ok"]),
                                        ("lowest", judged["lowest_ok"])) if not ok]
        met = "yes" if judged["met"] else f"**no** ({', '.join(failed)})"
    return [LABELS[deliverable], subset, side, figures["files"], round(figures["bytes"] / 1024, 1),
            round(figures["mean"], 2), f"{figures['lowest']:.2f} ({figures['lowest_image']})",
            "—" if judged is None else round(judged["ratio"], 3), met]


def spearman(first: list[float], second: list[float]) -> float:
    """Spearman's rank correlation: does the fast metric order files as the reference does?"""
    from scipy.stats import spearmanr

    return float(spearmanr(first, second).statistic) if len(first) > 2 else float("nan")


def agreement_table(scored: list[Scored], fast_name: str) -> dict:
    """blogimg's fast metric against the reference on every scored pair: by deliverable and set."""
    rows = []
    for deliverable in ("any", *DELIVERABLES):
        for subset in SETS:
            pairs = [s for s in scored if deliverable in ("any", s.deliverable) and subset in ("all", s.category)]
            if not pairs:
                continue
            differences = [abs(s.fast - s.reference) for s in pairs]
            megapixels = sum(s.megapixels for s in pairs)
            rows.append(["any deliverable" if deliverable == "any" else LABELS[deliverable], subset, len(pairs),
                         round(statistics.mean(differences), 3), round(max(differences), 3),
                         round(spearman([s.fast for s in pairs], [s.reference for s in pairs]), 4),
                         round(sum(s.fast_seconds for s in pairs) / megapixels, 3),
                         round(sum(s.reference_seconds for s in pairs) / megapixels, 3)])
    return {"title": f"Metric agreement: {fast_name} against the reference package",
            "header": ["files", "images", "pairs", "mean abs. difference", "max abs. difference", "Spearman ρ",
                       "fast s/MP", "reference s/MP"],
            "rows": rows}
