"""The imaging benchmark's notes: what the numbers mean, and for every missed target by how much
and why, computed from the run's own figures (bench/imaging.py writes them under the tables)."""

from __future__ import annotations

import statistics

from bench.common import Comparison
from bench.imaging_equal import EQUAL_LABELS, MAX_ENCODES, Match
from bench.imaging_quality import (
    BYTES_TARGET,
    DELIVERABLES,
    LABELS,
    SAME_MEAN,
    Scored,
    summary,
    verdict,
)


def notes(comparisons: list[Comparison], details: dict, scored: list[Scored], matches: list[Match]) -> list[str]:
    def first(prefix: str) -> Comparison | None:
        return next((c for c in comparisons if c.what.startswith(prefix)), None)

    corpus = details["corpus"]
    seconds = details["seconds"]
    text = [
        f"Corpus: {sum(len(v) for v in corpus.values())} images — {len(corpus['photo'])} photographs "
        "(scikit-image's, scaled to the size asked for, and sources at their native pixels: mosaics of the "
        "512×512 photographs and textures, crops of the 1411×1411 retina), "
        f"{len(corpus['art'])} synthetic art (small text both ways round, banding gradients, a fine texture, "
        f"a flat diagram) and {len(corpus['card'])} of `card` output. Subset for the single-deliverable rows: "
        f"{', '.join(details['subset'])}.",
        "Time: " + ", ".join(f"{what} {value:.0f} s" for what, value in seconds.items())
        + f" (scoring: {_per_megapixel(scored)}).",
    ]
    identical = first("a. identical settings, whole job")
    if identical:
        text.append(f"(a) whole job: blogimg makes byte-identical files {identical.ratio:.2f}× as fast as sharp. "
                    "It decodes each image once into memory and encodes its files side by side on a two-thread "
                    "pool; sharp decodes the source again for every output.")
    missed_alone = ", ".join(f"{c.what.split(', ')[1].removesuffix(' alone')} {c.ratio:.2f}×"
                             for c in comparisons if " alone" in c.what and not c.met)
    if missed_alone:
        text.append(
            f"(a) one deliverable alone misses ({missed_alone}). blogimg never makes a single file per image, "
            "but these rows expose its fixed cost per image: safe_load reads the header first (to refuse "
            "oversized images before decoding), decodes with fail-on-error into memory, auto-rotates, and only "
            "then encodes, so decoding cannot overlap encoding as in sharp's streamed pipeline. What would "
            "close it: when a job wants one file, stream the checked decoder straight into the encoder.")
    production = first("b. production settings, whole job")
    if production:
        ours, theirs = production.ours["median"], production.baseline["median"]
        text.append(speed_note(production.ratio, ours, theirs))
    text += _bytes_notes(scored)
    text += _equal_notes(details["equal_score"], matches)
    text.append(_agreement_note(details["fast_metric"], scored))
    rss = first("a. peak RSS")
    if rss:
        text.append(f"Peak RSS is {rss.ratio:.2f}× sharp's in (a): a Python interpreter with pyvips and blogimg "
                    "loaded, the decoded image held for the whole job, and its files encoded at once.")
    pillow = first("a. whole job against plain Pillow")
    if pillow:
        text.append(f"Plain Pillow is faster in (a) (blogimg makes {pillow.ratio:.2f}× its images/s) because it "
                    "does less: no trellis quantisation or scan optimisation in JPEG (its JPEGs are larger), no "
                    "sharp-YUV subsampling in WebP, a centre crop instead of a saliency crop, one thread per file.")
    text.append("Bytes in (b) are each deliverable's files at every width (the variants at 480, 768, 1024 and "
                "1536 wide where the source is that wide); scores are of the master at full size and of the "
                "768-wide variants. Thumbnails and LQIPs are made by every side but not compared here.")
    return text


def _bytes_notes(scored: list[Scored]) -> list[str]:
    """For each deliverable that misses the target against sharp: by how much on each condition,
    and the category that costs most."""
    text = []
    for deliverable in DELIVERABLES:
        ours, theirs = summary(scored, "blogimg", deliverable, "all"), summary(scored, "sharp", deliverable, "all")
        if not ours or not theirs:
            continue
        if ours["files"] != theirs["files"]:
            text.append(f"(b) {LABELS[deliverable]}: blogimg's scored files number {ours['files']}, sharp's "
                        f"{theirs['files']}: a side made no {deliverable} file at the scored width for some images.")
        judged = verdict(ours, theirs)
        if judged["met"]:
            continue
        misses = []
        if not judged["bytes_ok"]:
            misses.append(f"bytes {judged['ratio']:.3f}× sharp's against ≤ {BYTES_TARGET} "
                          f"({judged['ratio'] / BYTES_TARGET - 1:+.1%} over)")
        if not judged["mean_ok"]:
            misses.append(f"mean score {ours['mean']:.2f} against sharp's {theirs['mean']:.2f} − {SAME_MEAN}")
        if not judged["lowest_ok"]:
            misses.append(f"lowest score {ours['lowest']:.2f} ({ours['lowest_image']}) below sharp's lowest "
                          f"{theirs['lowest']:.2f}")
        by_category = []
        for kind in ("photo", "art", "card"):
            mine, other = summary(scored, "blogimg", deliverable, kind), summary(scored, "sharp", deliverable, kind)
            if mine and other:
                by_category.append(f"{kind} {mine['bytes'] / other['bytes']:.2f}× at mean "
                                   f"{mine['mean']:.1f} vs {other['mean']:.1f}")
        text.append(f"(b) {LABELS[deliverable]} misses the target against sharp: {'; '.join(misses)}. By "
                    f"category: {', '.join(by_category)}.")
    if text:
        text.append(WHY)
    return text


def speed_note(ratio: float, ours: float, theirs: float) -> str:
    """How production's speed compares with sharp's, with the run's figures, met or not."""
    if ratio >= 1.2:
        verdict = (f"(b) speed meets ≥ 1.2 with the quality search included: blogimg makes {ratio:.2f}× sharp's "
                   f"images/s ({ours:.2f} against {theirs:.2f}).")
    else:
        verdict = (f"(b) speed misses ≥ 1.2: blogimg makes {ratio:.2f}× sharp's images/s ({ours:.2f} against "
                   f"{theirs:.2f}), {1.2 / ratio:.2f}× short.")
    return (verdict + " blogimg's job includes its quality search where sharp encodes each file once at a fixed "
            "quality: the slope search (the default) scores up to 8 trial encodes on the 480-px probe for each "
            "of the JPEG master and WebP (four qualities across the range, then ± 7 and ± 3 around the best), "
            "one or two for AVIF (the floor search), and the file at the size readers see where the probe "
            "leaves it near its floor; each format's files start as soon as its own search ends "
            "(imaging/encoder_pool.py). The metric is numpy (imaging/perceptual.py): about 18 ms for a 480-px "
            "score on one core. Measured once, outside any run, on 15 of these images with two encoder "
            "threads (medians of 3): the scan-and-refine search took 1.22× the CPU of the walk it replaced "
            "(5 qualities a step from the fixed quality, about 4 trials) and, with the files started early, "
            "1.17× its wall time.")


#: Why production's bytes are where they are; written under the production rows whenever one misses.
WHY = (
    "(b) Why: the default search (`slope`) takes each image's JPEG and WebP quality to where one more score "
    'point costs the same bytes (JPEG_POINT_BYTES, WEBP_POINT_BYTES per megapixel), choosing on the 480-px '
    'probe from four qualities across the range refined around the best (± 7, then ± 3), and checks each '
    "format's floor where the file is scored (the full-size master, the 768-px variant), raising it there: "
    'the allocation bound (bench/imaging_bound.py, table e) showed that this is how the fewest bytes reach '
    "sharp's mean and lowest. The prices and floors are calibrated on this corpus. What is left between it "
    'and the bound (master 0.752×, WebP 0.771×): the search chooses on the probe, whose scores follow the '
    'scored sizes only roughly (table e: a 768-px WebP of a diagram or a card up to 6 points below its '
    'probe), and raising a file to its floor costs more there than choosing it at that size. Trying every '
    'quality from 30 to 95 on the probe did about as well as the search (replayed on the same encodes), so '
    'the rest of the gap is the probe itself; refining at 768 px around the probe\'s choice (± 3) gained '
    'WebP about half a percent in that replay, for two more encodes of the scored size an image. AVIF keeps '
    'the floor search (its fixed quality between FLOOR_SCORE and CEILING_SCORE): no choice of quality per '
    "image takes libaom at effort 3 to 0.80× sharp's bytes (the bound: 0.972×; 0.919× at sharp's effort 4). "
    'What would close it: a better encoder at the same time (libaom at effort 4 or more on faster cores, '
    'another AV1 encoder), or JPEG XL where browsers take it (0.415× for the master in the bound).'
)


def _equal_notes(equal: dict[str, dict[str, float]], matches: list[Match]) -> list[str]:
    if not equal:
        return []
    parts = [f"against {baseline}'s files " + ", ".join(f"{EQUAL_LABELS[d]} {r:.2f}×" for d, r in figures.items())
             for baseline, figures in equal.items() if baseline != "mozjpeg"]
    text = [f"(c) blogimg's encoders at equal score, image by image: {'; '.join(parts)}."]
    if "mozjpeg" in equal and "master" in equal["mozjpeg"]:
        text.append(f"(c) jpegli's masters are {equal['mozjpeg']['master']:.2f}× mozjpeg's bytes at the same "
                    "scores (sharp's), both searched the same way through blogimg's encode_bytes.")
    unreached = [m for m in matches if not m.reached]
    if unreached:
        examples = ", ".join(sorted({f"{m.image} {m.deliverable} ({m.encoder}, {m.score:.1f})" for m in unreached})[:5])
        text.append(f"(c) {len(unreached)} targets were not reached even at quality 100 (their bytes are quality "
                    f"100's): {examples}.")
    qualities = {d: statistics.mean(m.quality for m in matches if m.deliverable == d and m.encoder != "mozjpeg")
                 for d in DELIVERABLES if any(m.deliverable == d for m in matches)}
    encodes = statistics.mean(m.encodes for m in matches)
    text.append("(c) mean quality found: " + ", ".join(f"{EQUAL_LABELS[d]} {q:.0f}" for d, q in qualities.items())
                + f"; {encodes:.1f} trial encodes per target on average (at most {MAX_ENCODES} new ones, trials "
                "shared between targets), each scored by the fast metric.")
    return text


def _agreement_note(metric_name: str, scored: list[Scored]) -> str:
    if metric_name.startswith("reference"):
        return ("(d) blogimg's fast metric was not importable, so (c)'s searches used the reference package "
                "and the agreement table compares the reference with itself.")
    differences = [abs(s.fast - s.reference) for s in scored]
    return (f"(d) {metric_name} against the reference package on {len(scored)} pairs: mean absolute difference "
            f"{statistics.mean(differences):.3f}, max {max(differences):.3f}; {_per_megapixel(scored)}.")


def _per_megapixel(scored: list[Scored]) -> str:
    megapixels = sum(s.megapixels for s in scored) or 1.0
    return (f"reference {sum(s.reference_seconds for s in scored) / megapixels:.2f} s/MP, "
            f"fast {sum(s.fast_seconds for s in scored) / megapixels:.2f} s/MP over {megapixels:.0f} MP")
