"""The imaging benchmark's second table: bytes at equal score, image by image.

For every image and deliverable, the baseline's own file has a score S (the reference package, in
bench/imaging_quality.py). Here blogimg's encoder (``encode_bytes``) is searched for the lowest
quality whose file reaches S for that image at that size, and the bytes are compared: the
encoders' own gain, with the quality search's target taken from the baseline file, so neither
side's choice of target matters. Also jpegli against mozjpeg for the JPEG master at sharp's scores.

The search is a guarded interpolation on quality (bisection when interpolation stalls), at most
MAX_ENCODES encodes per target, sharing every trial between targets; it scores with blogimg's fast
metric (the reference package where blogimg has none), so its scores sit within the agreement
table's differences of the reference's.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pyvips

from bench.imaging_quality import (
    DELIVERABLES,
    SCORE_WIDTH,
    SETS,
    Scored,
    fast_metric,
    reference_for,
    rgb,
    worker_pool,
)
from blogimg.imaging.encoders import encode_bytes
from blogimg.imaging.options import ImagingOptions

MAX_ENCODES = 6
STEP = 12  #: how far to step while the target is not yet bracketed
FIRST_GUESS = {"jpeg": 80, "webp": 80, "avif": 50}  #: sharp's defaults: usually near the target
FORMAT = {"master": "jpeg", "webp": "webp", "avif": "avif"}
PRODUCTION = ImagingOptions()  #: blogimg's production encoder settings
EQUAL_LABELS = {"master": "master (full size)", "webp": f"WebP at {SCORE_WIDTH} wide",
                "avif": f"AVIF at {SCORE_WIDTH} wide"}


@dataclass
class Trials:
    """Every quality tried for one image, size, format and encoder: its score and bytes."""

    reference: pyvips.Image
    image_format: str
    jpeg_encoder: str
    metric: Callable[[pyvips.Image, pyvips.Image], float]
    tried: dict[int, tuple[float, int]] = field(default_factory=dict)

    def at(self, quality: int) -> tuple[float, int]:
        if quality not in self.tried:
            data = encode_bytes(self.reference, self.image_format, quality, jpeg_encoder=self.jpeg_encoder,
                                avif_effort=PRODUCTION.avif_effort, webp_effort=PRODUCTION.webp_effort,
                                avif_chroma=PRODUCTION.avif_chroma)
            decoded = rgb(pyvips.Image.new_from_buffer(data, ""))
            self.tried[quality] = (float(self.metric(self.reference, decoded)), len(data))
        return self.tried[quality]


def lowest_quality(trials: Trials, target: float, guess: int, budget: int = MAX_ENCODES) -> tuple[int, bool]:
    """The lowest quality known to reach ``target`` after at most ``budget`` new encodes, and
    whether any did (if none, quality 100, tried once more). Trials already made for other targets
    count: a second target near the first often needs one or two encodes."""
    spent = 0
    while True:
        failing = max((q for q, (s, _) in trials.tried.items() if s < target), default=0)
        passing = min((q for q, (s, _) in trials.tried.items() if s >= target and q > failing), default=101)
        if passing - failing <= 1 or spent >= budget:
            break
        if failing == 0 and passing == 101:
            quality = guess
        elif passing == 101:
            quality = min(100, failing + _step(target - trials.tried[failing][0]))
        elif failing == 0:
            quality = max(1, passing - _step(trials.tried[passing][0] - target))
        else:
            low, high = trials.tried[failing][0], trials.tried[passing][0]
            width = passing - failing
            estimate = failing + (target - low) / (high - low) * width if high > low else failing + width / 2
            # Guarded: at least a quarter of the bracket goes each step, so a flat curve cannot stall it.
            quality = round(min(max(estimate, failing + max(1, width // 4)), passing - max(1, width // 4)))
        trials.at(quality)
        spent += 1
    if passing == 101:
        return 100, trials.at(100)[0] >= target
    return passing, True


def _step(distance: float) -> int:
    """How far to step before the target is bracketed: about two quality points per score point
    missed (near the targets a point of score costs one to three of quality), at most STEP."""
    return min(STEP, max(2, round(2 * distance) + 1))


@dataclass
class Target:
    """One baseline file to match: blogimg's encoder must reach its score at its size."""

    baseline: str
    deliverable: str
    width: int
    height: int
    score: float
    bytes: int


@dataclass
class Match:
    image: str
    category: str
    baseline: str
    deliverable: str
    encoder: str
    score: float
    baseline_bytes: int
    bytes: int
    quality: int
    reached: bool
    encodes: int  #: new trial encodes this target needed (trials made for earlier targets are reused)


def match_image(source_path: str, image: str, kind: str, targets: list[Target]) -> list[Match]:
    """Every search for one image (runs in a worker process, so trials are shared per image)."""
    source = rgb(pyvips.Image.new_from_file(source_path))
    _, metric = fast_metric()
    trials: dict[tuple, Trials] = {}
    found: dict[str, int] = {}  #: the last quality found per format: the next search's first guess
    matches = []
    for target in targets:
        image_format = FORMAT[target.deliverable]
        encoders = ["jpegli", "mozjpeg"] if image_format == "jpeg" and target.baseline == "sharp" else ["jpegli"]
        for jpeg_encoder in encoders:
            key = (image_format, jpeg_encoder, target.width, target.height)
            if key not in trials:
                reference = reference_for(source, target.width, target.height)
                trials[key] = Trials(reference, image_format, jpeg_encoder, metric)
            before = len(trials[key].tried)
            guess = found.get(image_format, FIRST_GUESS[image_format])
            quality, reached = lowest_quality(trials[key], target.score, guess)
            found[image_format] = quality
            name = jpeg_encoder if image_format == "jpeg" else {"webp": "libwebp", "avif": "libaom"}[image_format]
            matches.append(Match(image, kind, target.baseline, target.deliverable, name, target.score,
                                 target.bytes, trials[key].tried[quality][1], quality, reached,
                                 len(trials[key].tried) - before))
    return matches


def match_all(scored: list[Scored], baselines: Iterable[str], *, processes: int = 2,
              corpus_folder: str) -> list[Match]:
    by_image: dict[str, list[Target]] = {}
    kinds: dict[str, str] = {}
    for row in scored:
        if row.side in baselines:
            by_image.setdefault(row.image, []).append(
                Target(row.side, row.deliverable, row.width, row.height, row.reference, row.bytes_scored))
            kinds[row.image] = row.category
    names = sorted(by_image)
    with worker_pool(processes) as pool:
        results = pool.map(match_image, [f"{corpus_folder}/{n}" for n in names], names,
                           [kinds[n] for n in names], [by_image[n] for n in names])
        return [match for image_matches in results for match in image_matches]


def equal_score_table(matches: list[Match], metric_name: str) -> dict:
    """Bytes at equal score per deliverable and set: blogimg's encoder against each baseline file,
    and jpegli against mozjpeg (both blogimg's) at sharp's scores."""
    rows = []
    for deliverable in DELIVERABLES:
        for baseline in sorted({m.baseline for m in matches}):
            for subset in SETS:
                chosen = [m for m in matches if m.deliverable == deliverable and m.baseline == baseline
                          and subset in ("all", m.category) and m.encoder != "mozjpeg"]
                if chosen:
                    rows.append(_row(deliverable, subset, f"{chosen[0].encoder} ÷ {baseline}'s file", chosen,
                                     [m.baseline_bytes for m in chosen]))
        for subset in SETS:
            pairs = _jpeg_pairs(matches, deliverable, subset)
            if pairs:
                rows.append(_row(deliverable, subset, "jpegli ÷ mozjpeg (sharp's scores)",
                                 [jpegli for jpegli, _ in pairs], [mozjpeg.bytes for _, mozjpeg in pairs]))
    return {"title": "At equal score image by image: blogimg's encoder at the lowest quality that reaches "
                     "the other file's score (no quality search of blogimg's own)",
            "header": ["deliverable", "images", "comparison", "files", "blogimg KiB", "other KiB", "ratio",
                       "mean quality", "targets not reached"],
            "rows": rows, "metric": metric_name}


def _jpeg_pairs(matches: list[Match], deliverable: str, subset: str) -> list[tuple[Match, Match]]:
    mine = {m.image: m for m in matches if m.deliverable == deliverable and m.baseline == "sharp"
            and m.encoder == "jpegli" and subset in ("all", m.category)}
    return [(mine[m.image], m) for m in matches if m.encoder == "mozjpeg" and m.image in mine
            and m.deliverable == deliverable]


def _row(deliverable: str, subset: str, what: str, ours: list[Match], theirs: list[int]) -> list:
    total, other = sum(m.bytes for m in ours), sum(theirs)
    return [EQUAL_LABELS[deliverable], subset, what,
            len(ours), round(total / 1024, 1), round(other / 1024, 1), round(total / other, 3),
            round(statistics.mean(m.quality for m in ours), 1), sum(1 for m in ours if not m.reached)]


def ratios(matches: list[Match]) -> dict[str, dict[str, float]]:
    """Whole-corpus bytes ratios per baseline (and "mozjpeg") and deliverable, for the notes."""
    result: dict[str, dict[str, float]] = {}
    for deliverable in DELIVERABLES:
        for baseline in sorted({m.baseline for m in matches}):
            chosen = [m for m in matches if m.deliverable == deliverable and m.baseline == baseline
                      and m.encoder != "mozjpeg"]
            if chosen:
                result.setdefault(baseline, {})[deliverable] = (sum(m.bytes for m in chosen)
                                                                / sum(m.baseline_bytes for m in chosen))
        pairs = _jpeg_pairs(matches, deliverable, "all")
        if pairs:
            result.setdefault("mozjpeg", {})[deliverable] = (sum(a.bytes for a, _ in pairs)
                                                             / sum(b.bytes for _, b in pairs))
    return result
