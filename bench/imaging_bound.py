"""The imaging benchmark's part (e): the fewest bytes any choice of quality per image could give.

The issue's bytes target (≤ 0.80× sharp's at equal quality) leaves blogimg two levers: a better
encoder, and a better quality for each image. Table (c) of bench/imaging.py measures the first,
image by image. This measures the most the second could ever give, whatever the search:

- For every image and deliverable, an encoder is swept over a grid of qualities at the size the
  benchmark scores (the master at full size, the WebP and AVIF at SCORE_WIDTH): each file's bytes
  and its SSIMULACRA2 (blogimg's fast metric, within METRIC_TOLERANCE of the reference package that
  scored sharp's files). Flat art also has the lossless file production weighs for it (a PNG
  master, a lossless WebP; `imaging/choices.py`), judged flat on the same 480-px probe.
- The issue's "equal quality" against sharp's scored files allows any choice of one quality per
  image whose scores have a mean ≥ T (sharp's mean − SAME_MEAN) and none below L (sharp's lowest).
  For every λ ≥ 0, Σᵢ min_q [bytesᵢ(q) − λ·(scoreᵢ(q) − T)] over the qualities scoring ≥ L is at most
  the bytes of *any* such choice (the added term is ≤ 0 for it): a lower bound, by Lagrangian
  duality. The best λ found is the **bound**; the minimiser at the smallest λ whose mean reaches T
  meets both conditions and is reported too (**best choice**), to show the bound is nearly reached.
  The bound takes T and L METRIC_TOLERANCE lower, the best choice that much higher, so neither
  claim rests on the two metrics' last digit.
- The same for encoders that could close the gap: AVIF at sharp's effort 4 (production runs 3;
  effort 6 takes about twice effort 4's time again, too long for this sweep), jpegli for the master
  (production runs mozjpeg), and JPEG XL (libjxl through imagecodecs), which not every browser
  decodes.

Its limits: it is over the grid, so a quality between two grid points could do a little better
than the bound; each file is encoded from the exactly resized reference it is scored against
(production's own resize is not the benchmark's, a fraction of a point either way); and it covers
the scored files only: a variant's one quality serves every width, so the scored width's bytes
stand for the rest (production's all-width ratios ran 0–2% above its scored-file ratios).

sharp's scored files and scores are read from the imaging benchmark's result, so run
bench/imaging.py first (`make bench` does). Each image's sweep is cached in the corpus folder, keyed
by the encoders, grids, settings, library versions and the code that encodes and scores, so a run
interrupted or re-reported does not sweep again; the result says how many sweeps were cached.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import inspect
import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy
import pyvips

from bench.common import RESULTS, write_result
from bench.imaging_bound_math import METRIC_TOLERANCE, Point, bound
from bench.imaging_corpus import build, category
from bench.imaging_quality import (
    DELIVERABLES,
    LABELS,
    SAME_MEAN,
    SETS,
    fast_metric,
    reference_for,
    rgb,
    worker_pool,
)
from bench.imaging_slope import slope_table
from blogimg.imaging import encoders as encoders_module
from blogimg.imaging import perceptual
from blogimg.imaging.choices import LOSSLESS_WEBP_QUALITY
from blogimg.imaging.encoders import encode_bytes, jpegli_available
from blogimg.imaging.options import ImagingOptions
from blogimg.imaging.quality_search import few_colours

PRODUCTION = ImagingOptions()
#: Qualities swept per format: dense where sharp's defaults land (JPEG/WebP 80, AVIF 50), so the
#: bound is close to what a finer search could find, and wide enough to reach sharp's lowest.
GRIDS = {
    "jpeg": (40, 50, 58, 64, 68, 72, 75, 78, 80, 82, 84, 86, 88, 90, 93, 96),
    "webp": (40, 50, 58, 64, 68, 72, 75, 78, 80, 82, 84, 86, 88, 90, 93, 96),
    "avif": (24, 30, 35, 40, 43, 46, 48, 50, 52, 54, 56, 60, 64, 70, 76, 84),
    "jxl": (30, 40, 50, 58, 64, 70, 75, 80, 84, 88, 92),
}
TINY_GRIDS = {name: grid[::3] for name, grid in GRIDS.items()}
JXL_EFFORT = 7  #: libjxl's default


Sweep = Callable[..., dict[str, list[Point]]]


@dataclass(frozen=True)
class Encoder:
    """One way of making a deliverable's file: a name for the table and the grid it sweeps."""

    name: str
    deliverable: str
    grid: str  #: key of GRIDS: the format
    production: bool = False  #: blogimg's production encoder for this deliverable
    jpeg_encoder: str = PRODUCTION.jpeg_encoder
    avif_effort: int = PRODUCTION.avif_effort


ENCODERS = (
    Encoder(f"{PRODUCTION.jpeg_encoder} (production)", "master", "jpeg", production=True),
    Encoder("jpegli", "master", "jpeg", jpeg_encoder="jpegli"),
    Encoder(f"JPEG XL, effort {JXL_EFFORT}", "master", "jxl"),
    Encoder(f"libwebp, effort {PRODUCTION.webp_effort} (production)", "webp", "webp", production=True),
    Encoder(f"libaom, effort {PRODUCTION.avif_effort} (production)", "avif", "avif", production=True),
    Encoder("libaom, effort 4 (sharp's)", "avif", "avif", avif_effort=4),
)


def available(encoder: Encoder) -> bool:
    """Whether this machine has the encoder (encode_bytes would quietly use mozjpeg for jpegli)."""
    if encoder.grid == "jxl":
        try:
            import imagecodecs
        except ImportError:
            return False
        return bool(imagecodecs.JPEGXL.available)
    return encoder.jpeg_encoder != "jpegli" or jpegli_available()


def encode(encoder: Encoder, image: pyvips.Image, quality: int) -> bytes:
    """``image`` (8-bit, three bands) at ``quality`` with this encoder's settings."""
    if encoder.grid == "jxl":
        import imagecodecs  # a bench dependency only, imported where it is needed

        pixels = numpy.frombuffer(image.write_to_memory(), dtype=numpy.uint8).reshape(image.height, image.width,
                                                                                      image.bands)
        return bytes(imagecodecs.jpegxl_encode(pixels, level=quality, effort=JXL_EFFORT))  # level: cjxl's -q
    return encode_bytes(image, encoder.grid, quality, jpeg_encoder=encoder.jpeg_encoder,
                        avif_effort=encoder.avif_effort, webp_effort=PRODUCTION.webp_effort,
                        avif_chroma=PRODUCTION.avif_chroma)


def decode(encoder: Encoder, data: bytes) -> pyvips.Image:
    """The file's pixels as the metric takes them (libvips has no JPEG XL decoder here)."""
    if encoder.grid == "jxl":
        import imagecodecs

        pixels = imagecodecs.jpegxl_decode(data)
        bands = pixels.shape[2] if pixels.ndim == 3 else 1
        return rgb(pyvips.Image.new_from_memory(pixels.tobytes(), pixels.shape[1], pixels.shape[0], bands, "uchar"))
    return rgb(pyvips.Image.new_from_buffer(data, ""))


def sweep_key(encoders: tuple[Encoder, ...], grids: dict[str, tuple[int, ...]], sweep: Sweep) -> str:
    """What a cached sweep depends on besides the corpus (whose folder holds the cache): the
    encoders, grids, settings and library versions, and the code that resizes, encodes and scores."""
    code = [inspect.getsource(function) for function in (encode, decode, _points, _probe, reference_for, rgb, sweep)]
    code += [inspect.getsource(module) for module in (encoders_module, perceptual)]
    versions = {name: importlib.metadata.version(name) for name in ("pyvips-binary", "imagecodecs", "pyjpegli")
                if _installed(name)}
    recipe = {"encoders": [asdict(e) for e in encoders], "grids": grids, "jxl_effort": JXL_EFFORT,
              "production": repr(PRODUCTION), "libvips": [pyvips.version(i) for i in range(3)],
              "versions": versions, "code": code}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def sweep_image(source_path: str, encoders: tuple[Encoder, ...], grids: dict[str, tuple[int, ...]],
                width: int, height: int, cache: str) -> dict[str, list[Point]]:
    """The lossy points of every encoder for one image at the scored size (a worker process)."""
    cached = _read_cache(cache)
    if cached is not None:
        return cached
    source = rgb(pyvips.Image.new_from_file(source_path))
    variant = reference_for(source, width, height)
    curves = {encoder.name: _points(encoder, source if encoder.deliverable == "master" else variant,
                                    grids[encoder.grid]) for encoder in encoders}
    return _write_cache(cache, curves)


def sweep_probe(source_path: str, encoders: tuple[Encoder, ...], grids: dict[str, tuple[int, ...]],
                cache: str) -> dict[str, list[Point]]:
    """The lossy points of production's encoders on the quality search's probe (the narrowest
    variant), to set beside the scored size's at each quality."""
    cached = _read_cache(cache)
    if cached is not None:
        return cached
    probe = _probe(rgb(pyvips.Image.new_from_file(source_path)))
    return _write_cache(cache, {e.name: _points(e, probe, grids[e.grid]) for e in encoders if e.production})


def _points(encoder: Encoder, reference: pyvips.Image, qualities: tuple[int, ...]) -> list[Point]:
    _, metric = fast_metric()
    points = []
    for quality in qualities:
        data = encode(encoder, reference, quality)
        points.append(Point(quality, len(data), float(metric(reference, decode(encoder, data)))))
    return points


def _probe(source: pyvips.Image) -> pyvips.Image:
    """The search's probe as process.py makes it: the narrowest variant, never wider than the source."""
    return rgb(source.resize(min(PRODUCTION.variant_widths + (source.width,)) / source.width))


def _installed(name: str) -> bool:
    try:
        importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _read_cache(cache: str) -> dict[str, list[Point]] | None:
    path = Path(cache)
    if not path.is_file():
        return None
    return {name: [Point(*p) for p in points] for name, points in json.loads(path.read_text()).items()}


def _write_cache(cache: str, curves: dict[str, list[Point]]) -> dict[str, list[Point]]:
    path = Path(cache)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(curves))
    os.replace(partial, path)  # whole or not at all: an interrupted run leaves no torn file
    return curves


def lossless_points(source_path: str, width: int, height: int) -> dict[str, Point]:
    """The lossless file production would weigh per deliverable, for flat art only: judged flat on
    the narrowest variant, as process.py's probe is, and made at the scored size."""
    source = rgb(pyvips.Image.new_from_file(source_path))
    if not few_colours(_probe(source)):
        return {}
    variant = reference_for(source, width, height)
    return {"master": Point(None, len(encode_bytes(source, "png", 100)), 100.0),
            "webp": Point(None, len(encode_bytes(variant, "webp", LOSSLESS_WEBP_QUALITY, lossless=True)), 100.0)}


def table(rows: list[dict], curves: dict[str, dict[str, list[Point]]], lossless: dict[str, dict[str, Point]],
          encoders: tuple[Encoder, ...], tiny: bool) -> tuple[dict, list[dict]]:
    """Per deliverable, set of images and encoder: the bound and the best choice against sharp's bytes."""
    lines, figures = [], []
    for deliverable in DELIVERABLES:
        ours = {r["image"]: r for r in rows if r["side"] == "blogimg" and r["deliverable"] == deliverable}
        for subset in SETS:
            sharp = [r for r in rows if r["side"] == "sharp" and r["deliverable"] == deliverable
                     and subset in ("all", r["category"])]
            if not sharp:
                continue
            scored = sum(r["bytes_scored"] for r in sharp)
            mean = sum(r["reference"] for r in sharp) / len(sharp) - SAME_MEAN
            lowest = min(r["reference"] for r in sharp)
            production = [ours[r["image"]] for r in sharp if r["image"] in ours]
            for encoder in (e for e in encoders if e.deliverable == deliverable):
                image_curves = [curves[r["image"]][encoder.name] + ([lossless[r["image"]][deliverable]]
                                                                    if deliverable in lossless[r["image"]] else [])
                                for r in sharp]
                below = bound(image_curves, mean - METRIC_TOLERANCE, lowest - METRIC_TOLERANCE)
                choice = bound(image_curves, mean + METRIC_TOLERANCE, lowest + METRIC_TOLERANCE)
                figure = {"deliverable": deliverable, "set": subset, "encoder": encoder.name,
                          "production": encoder.production, "sharp_scored_bytes": scored,
                          "sharp_all_bytes": sum(r["bytes_total"] for r in sharp),
                          "production_scored_bytes": sum(r["bytes_scored"] for r in production),
                          "production_all_bytes": sum(r["bytes_total"] for r in production),
                          "needed_mean": mean, "needed_lowest": lowest, "bound": below.bound,
                          "choice": choice.as_dict()}
                figures.append(figure)
                lines.append(_line(figure, len(sharp), mean, lowest))
    grid = "every third grid quality (tiny run)" if tiny else "the full grid"
    return ({"title": "e. The allocation bound: the fewest bytes of the scored files that any choice of one "
                      f"quality per image gives at the issue's equal quality against sharp ({grid})",
             "header": ["deliverable", "images", "encoder", "files", "sharp KiB (scored files)",
                        "production ÷ sharp: scored files / all widths", "needed mean / lowest", "bound ÷ sharp",
                        "best choice ÷ sharp", "best choice mean / lowest", "lossless files"],
             "rows": lines}, figures)


def _line(figure: dict, files: int, mean: float, lowest: float) -> list:
    sharp, choice = figure["sharp_scored_bytes"], figure["choice"]
    production = (f"{figure['production_scored_bytes'] / sharp:.3f} / "
                  f"{figure['production_all_bytes'] / figure['sharp_all_bytes']:.3f}") if figure["production"] else "—"
    found = "no choice on the grid meets them"
    if choice["feasible"]:
        found = f"{choice['mean']:.2f} / {choice['lowest']:.2f}"
    return [LABELS[figure["deliverable"]], figure["set"], figure["encoder"], files, round(sharp / 1024, 1),
            production, f"{mean:.2f} / {lowest:.2f}",
            "—" if figure["bound"] is None else round(figure["bound"] / sharp, 3),
            round(choice["bytes"] / sharp, 3) if choice["feasible"] else "—", found, choice["lossless"]]


def notes(figures: list[dict], skipped: list[str]) -> list[str]:
    """One line per deliverable: how far the best allocation of production's encoder is from 0.80×."""
    lines = []
    for deliverable in DELIVERABLES:
        rows = [f for f in figures if f["deliverable"] == deliverable and f["set"] == "all" and f["bound"] is not None]
        production = next((f for f in rows if f["production"]), None)
        if production is None:
            continue
        best = min(rows, key=lambda f: f["bound"])
        sharp = production["sharp_scored_bytes"]
        caveat = " — not every browser decodes JPEG XL" if "JPEG XL" in best["encoder"] else ""
        lines.append(
            f"{LABELS[deliverable]}: production's scored files are {production['production_scored_bytes'] / sharp:.3f}× "
            f"sharp's; no choice of one quality per image on the grid could take its encoder below "
            f"{production['bound'] / sharp:.3f}× at equal quality (best choice found "
            f"{production['choice']['bytes'] / sharp:.3f}×); the lowest bound of any encoder swept is "
            f"{best['bound'] / sharp:.3f}× ({best['encoder']}{caveat}).")
    lines += [f"not swept, missing on this machine: {name}" for name in skipped]
    return lines


def sharp_rows(tiny: bool) -> list[dict]:
    path = (RESULTS / "tiny" if tiny else RESULTS) / "imaging.json"
    if not path.is_file():
        raise SystemExit(f"bench.imaging_bound: {path} is missing; run python -m bench.imaging"
                         f"{' --tiny' if tiny else ''} first")
    return json.loads(path.read_text())["details"]["scores"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="one short run, to prove the benchmark works")
    parser.add_argument("--fresh", action="store_true", help="sweep every image again, even when cached")
    arguments = parser.parse_args(argv)
    rows = sharp_rows(arguments.tiny)
    corpus = build(tiny=arguments.tiny)[0].parent
    sizes = {r["image"]: (r["width"], r["height"]) for r in rows  # the variants' scored size
             if r["side"] == "sharp" and r["deliverable"] != "master"}
    images = sorted(sizes)
    encoders = tuple(e for e in ENCODERS if available(e))
    skipped = [e.name for e in ENCODERS if e not in encoders]
    grids = TINY_GRIDS if arguments.tiny else GRIDS
    caches = [corpus / "bound-sweeps" / f"{kind}-{sweep_key(encoders, grids, sweep)}"
              for kind, sweep in (("scored", sweep_image), ("probe", sweep_probe))]
    for cache in caches if arguments.fresh else []:
        shutil.rmtree(cache, ignore_errors=True)
    cached = {kind: sum((cache / f"{name}.json").is_file() for name in images)
              for kind, cache in zip(("scored", "probe"), caches, strict=True)}
    started = time.perf_counter()
    curves: dict[str, dict[str, list[Point]]] = {}
    probes: dict[str, dict[str, list[Point]]] = {}
    lossless: dict[str, dict[str, Point]] = {}
    with worker_pool(2) as pool:
        sweeps = [pool.submit(sweep_image, str(corpus / name), encoders, grids, *sizes[name],
                              str(caches[0] / f"{name}.json")) for name in images]
        at_probe = [pool.submit(sweep_probe, str(corpus / name), encoders, grids, str(caches[1] / f"{name}.json"))
                    for name in images]
        exact = [pool.submit(lossless_points, str(corpus / name), *sizes[name]) for name in images]
        for done, (name, sweep, probe, flat) in enumerate(zip(images, sweeps, at_probe, exact, strict=True), 1):
            curves[name], probes[name], lossless[name] = sweep.result(), probe.result(), flat.result()
            _progress(f"{done}/{len(images)} images swept ({time.perf_counter() - started:.0f} s)")
    result, figures = table(rows, curves, lossless, encoders, arguments.tiny)
    production = {e.deliverable: e.name for e in encoders if e.production}
    simulated = slope_table(rows, curves, probes, lossless, production, min(PRODUCTION.variant_widths))
    details = {"tables": [result, probe_table(curves, probes, encoders), simulated], "figures": figures,
               "curves": curves,
               "probes": probes, "lossless": lossless, "seconds": time.perf_counter() - started,
               "cached_sweeps": cached,
               "notes": notes(figures, skipped)}
    path = write_result("imaging_bound", "Imaging: the allocation bound at equal quality", [], details,
                        tiny=arguments.tiny)
    print(f"imaging_bound: {len(images)} images in {details['seconds']:.0f} s ({cached['scored']} scored and "
          f"{cached['probe']} probe sweeps from the cache) → {path}")


def probe_table(curves: dict[str, dict[str, list[Point]]], probes: dict[str, dict[str, list[Point]]],
                encoders: tuple[Encoder, ...]) -> dict:
    """How the scored size's score follows the search's probe at one quality, per deliverable and
    category, over the files the probe scores at least FLOOR_SCORE (the ones the search may keep):
    either way, by format and content, so the probe's floor is not the scored size's."""
    rows = []
    for encoder in (e for e in encoders if e.production):
        for subset in SETS:
            differences = []
            for image in (name for name in curves if subset in ("all", category(name))):
                for scored, probed in zip(curves[image][encoder.name], probes[image][encoder.name], strict=True):
                    assert scored.quality == probed.quality, (image, scored, probed)  # the same grid, in order
                    if probed.score >= PRODUCTION.floor_score:
                        differences.append((scored.score - probed.score, image, scored.quality))
            if not differences:
                continue
            lowest, highest = min(differences), max(differences)
            rows.append([LABELS[encoder.deliverable], subset, len(differences),
                         f"{statistics.median(d for d, _, _ in differences):+.2f}",
                         f"{lowest[0]:+.1f} ({lowest[1]}, q{lowest[2]})", f"{highest[0]:+.1f} ({highest[1]}, q{highest[2]})",
                         sum(1 for d, _, _ in differences if d < -1)])
    return {"title": "e. The search's probe against the scored size: score at the scored size − score on the "
                     f"{min(PRODUCTION.variant_widths)}-px probe at the same quality, production's encoders, over "
                     f"every grid quality the probe scores ≥ {PRODUCTION.floor_score:g} (FLOOR_SCORE)",
            "header": ["deliverable", "images", "pairs", "median difference", "largest drop", "largest rise",
                       "pairs more than 1 point lower"],
            "rows": rows}


def _progress(message: str) -> None:
    print(f"imaging_bound: {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
