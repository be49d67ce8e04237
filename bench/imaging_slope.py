"""A search that could meet the bytes target, simulated on the allocation bound's sweeps.

The bound (bench/imaging_bound.py) reaches its fewest bytes by taking every image to where one
more score point costs the same bytes. A search can do that per image without seeing the others:
on its probe, keep the quality minimising bytes per megapixel − λ·score, with one λ for every
image (a setting). This replays that choice on the sweeps already made, without encoding again:

- per image, the probe's grid point minimising that sum;
- then a floor checked at the scored size (the probe cannot guard it: see the probe table), by
  raising the quality along the grid until the scored file reaches the floor;
- a lossless file kept when it is smaller than the chosen lossy one, as production does;
- λ the smallest on a fine logarithmic grid whose scored mean reaches sharp's − SAME_MEAN.

λ and the floor are fitted on the corpus they are judged on, so a met row shows the target is
within a search's reach, not that a setting would meet it on other images.
"""

from __future__ import annotations

import statistics

from bench.imaging_bound_math import METRIC_TOLERANCE, Point
from bench.imaging_quality import BYTES_TARGET, LABELS, SAME_MEAN

FLOORS = (60.0, 65.0, 68.0, 70.0)  #: scored-size floors tried (FLOOR_SCORE is 60)
WEIGHTS = tuple(10 ** (step / 60) for step in range(0, 480))  #: λ, bytes per megapixel per score point


def choose(probe: list[Point], scored: list[Point], lossless: Point | None, probe_megapixels: float,
           weight: float, floor: float) -> Point:
    """One image's scored file under the simulated search."""
    picked = min(range(len(probe)), key=lambda i: probe[i].size / probe_megapixels - weight * probe[i].score)
    while scored[picked].score < floor and picked + 1 < len(scored):  # the check at the scored size
        picked += 1
    point = scored[picked]
    return lossless if lossless is not None and lossless.size < point.size else point


def slope_table(rows: list[dict], curves: dict[str, dict[str, list[Point]]],
                probes: dict[str, dict[str, list[Point]]], lossless: dict[str, dict[str, Point]],
                production: dict[str, str], probe_width: int) -> dict:
    """Per deliverable (production's encoder, named in ``production``) and floor: the bytes of the
    simulated search against sharp's scored files, at the smallest λ reaching the issue's mean."""
    lines = []
    # The probe is probe_width wide at the source's aspect ratio (never wider): the masters' sizes.
    probe_megapixels = {r["image"]: min(probe_width, r["width"]) ** 2 * r["height"] / r["width"] / 1e6
                        for r in rows if r["side"] == "sharp" and r["deliverable"] == "master"}
    for deliverable, encoder in production.items():
        sharp = [r for r in rows if r["side"] == "sharp" and r["deliverable"] == deliverable]
        if not sharp:
            continue
        mean = statistics.mean(r["reference"] for r in sharp) - SAME_MEAN
        lowest = min(r["reference"] for r in sharp)
        theirs = sum(r["bytes_scored"] for r in sharp)
        # What each image brings to every choice, gathered once, not once per λ and floor.
        inputs = [(probes[r["image"]][encoder], curves[r["image"]][encoder],
                   _lossless(lossless[r["image"]].get(deliverable)), probe_megapixels[r["image"]]) for r in sharp]
        for floor in FLOORS:
            found = None
            for weight in WEIGHTS:
                chosen = [choose(probe, scored, exact, megapixels, weight, floor)
                          for probe, scored, exact, megapixels in inputs]
                if statistics.mean(p.score for p in chosen) >= mean + METRIC_TOLERANCE:
                    found = (weight, chosen)
                    break
            if found is None:
                lines.append([LABELS[deliverable], encoder, f"{floor:g}", "—", "—", "—", "—", "no λ reaches the mean"])
                continue
            weight, chosen = found
            ratio = sum(p.size for p in chosen) / theirs
            reached = min(p.score for p in chosen)
            met = ratio <= BYTES_TARGET and reached >= lowest + METRIC_TOLERANCE
            lines.append([LABELS[deliverable], encoder, f"{floor:g}", f"{weight:,.0f}", round(ratio, 3),
                          f"{statistics.mean(p.score for p in chosen):.2f} / {mean:.2f}",
                          f"{reached:.2f} / {lowest:.2f}", "yes" if met else "no"])
    return {"title": "e. A search that could meet it, simulated on these sweeps: each image's quality chosen on the "
                     f"{probe_width}-px probe at one cost per score point (λ), raised until the scored file reaches "
                     "the floor, λ fitted to sharp's mean (fitted on this corpus)",
            "header": ["deliverable", "encoder", "floor at the scored size", "λ (bytes/MP per point)",
                       "scored bytes ÷ sharp's", "mean / needed", "lowest / needed",
                       f"≤ {BYTES_TARGET} at equal quality"],
            "rows": lines}


def _lossless(point: Point | list | None) -> Point | None:
    """A lossless point as the sweep gives it, or as read back from JSON (a list)."""
    return None if point is None else Point(*point)
