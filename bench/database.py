"""Benchmark 3: the API's queries at 1,000,000 image rows, SQLite and PostgreSQL side by side.

Baselines, in the same run on the same rows: OFFSET paging (what keyset cursors replace),
page 1 itself (keyset page 500,000 should cost what page 1 costs), and the full-scan daily stats
that the rollups replace. Every query is the one the API runs (db/catalog.py, db/reporting.py),
timed from Python through SQLAlchemy, as a handler would see it.

The rows are inserted directly, so the rollups are made as production makes them: by the
triggers of migration 0008 during the load; on PostgreSQL the deltas they append are then
folded (readers fold as they go; here once, timed, after the load).

``--only stats`` runs only the stats measurements and replaces those in the saved results,
keeping the other figures of the last full run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import time
from collections import defaultdict
from datetime import timedelta

from sqlalchemy import case, func, insert, select

from bench.common import RESULTS, ROOT, Comparison, write_result
from blogimg.db import rollups
from blogimg.db.catalog import Catalog, encode_cursor
from blogimg.db.engine import open_database
from blogimg.db.reporting import Reporting
from blogimg.db.tables import (
    BlogPost,
    GeneratedImage,
    GenerationAttempt,
    ImagePromptRow,
    ImageRollup,
    utcnow,
)

PROVIDERS = ("openai", "google", "card")
# (comparison, what to say when it misses, what to say when it meets the target)
NOTES = [
    ("picture 4242",
     "Text search for a rare phrase misses ({factors} the target) although the trigram index answers it "
     "(migration 0004; db/text_search.py): on PostgreSQL, EXPLAIN ANALYZE shows a bitmap index scan reading "
     "~1,900 buffers, "
     "because the phrase's trigrams from 'picture' occur in every one of the 1M alt texts here, and GIN must "
     "intersect their posting lists before the rare ones narrow it. What would close it: a word-level "
     "full-text index (tsvector) for whole-word phrases, with trigrams kept for substrings.",
     "Text search for a rare phrase meets the target through trigram indexes (migration 0004: FTS5 on SQLite, "
     "pg_trgm on PostgreSQL; db/text_search.py). Before them, LIKE '%…%' read all 1M rows: p95 ~0.5 s on "
     "SQLite and ~0.6 s on PostgreSQL."),
    ("stats",
     "Stats misses (by {factors}) although it reads the rollups (migration 0008, db/rollups.py) instead of "
     "every row, and is hundreds of times faster than the full scan it replaced (same run). What is left is "
     "reading ~5,500 rollup rows (29 days × 3 providers × 2 statuses × ~30 latency buckets) into Python: "
     "compare the full-scan baseline's time with earlier runs to see how loaded the machine was. What would "
     "close it: fewer buckets per doubling (4: ±19%), or percentiles in SQL from a cumulative histogram.",
     "Stats meets the target by reading the rollups (migration 0008, db/rollups.py: per day, provider, model, "
     "status and latency bucket, kept by triggers in the writing transaction) instead of every row; the "
     "full-scan baseline is the code it replaced (p95 ~4 s)."),
    ("keyset page at 500k",
     "Keyset paging misses (by {factors}).",
     "Keyset paging was ~20× slower at page 500,000 than page 1 in the first run of this benchmark: the "
     "cursor was written as 'a < x OR (a = x AND b < y)'. It is now a row-value comparison and meets the "
     "target."),
]


def _notes(comparisons: list[Comparison]) -> list[str]:
    notes = []
    for name, missed, met in NOTES:
        matching = [c for c in comparisons if name in c.what and c.target]
        misses = [c for c in matching if c.met is False]
        if misses:
            factors = ", ".join(f"{c.what.split(',')[0]} {_miss_factor(c):.3g}×" for c in misses)
            notes.append(missed.format(factors=factors))
        elif matching:
            notes.append(met)
    return notes


def _miss_factor(comparison: Comparison) -> float:
    limit = 20 if "p95" in (comparison.target or "") else 1.5
    return comparison.ratio / limit


WORDS = ("harbour", "lighthouse", "forest", "kitchen", "server", "garden", "mountain", "city", "river", "tea")


async def populate(catalog: Catalog, rows: int) -> None:
    """One post, ``rows // 1000`` prompts, 1000 variations each: ``rows`` jobs, mostly succeeded."""
    rng = random.Random(7)
    prompts_count = max(1, rows // 1000)
    per_prompt = rows // prompts_count
    started = utcnow() - timedelta(days=30)
    async with catalog.sessions.begin() as session:
        post = BlogPost(slug="bench", title="Bench", markdown="", summary="")
        session.add(post)
        await session.flush()
        await session.execute(insert(ImagePromptRow), [
            {"post_id": post.id, "kind": "inline", "position": n, "prompt": f"a {WORDS[n % 10]} scene number {n}",
             "size": "1024x1024", "fingerprint": f"{n:064d}", "alt_hint": "", "heading": "",
             "created_at": started, "updated_at": started} for n in range(prompts_count)])
        prompt_ids = list(await session.scalars(select(ImagePromptRow.id).order_by(ImagePromptRow.id)))
        post_id = post.id
    chunk: list[dict] = []
    for index in range(prompts_count * per_prompt):
        created = started + timedelta(seconds=index * 2.5)
        status = "failed" if rng.random() < 0.03 else "succeeded"
        chunk.append({
            "prompt_id": prompt_ids[index // per_prompt], "post_id": post_id, "variation": index % per_prompt,
            "status": status, "attempts": 1, "provider": PROVIDERS[index % 3], "model": "m",
            "cost_usd": 0.04 if status == "succeeded" else 0.0, "latency_ms": int(rng.lognormvariate(8, 0.4)),
            "bytes_stored": 120_000, "alt_text": f"{WORDS[index % 10]} at dusk, picture {index}", "tags": [],
            "created_at": created, "updated_at": created,
        })
        if len(chunk) == 20_000:
            async with catalog.sessions.begin() as session:
                await session.execute(insert(GeneratedImage), chunk)
            chunk = []
    if chunk:
        async with catalog.sessions.begin() as session:
            await session.execute(insert(GeneratedImage), chunk)
    if catalog.engine.dialect.name == "postgresql":
        async with catalog.engine.connect() as connection:
            # What autovacuum would do soon after a bulk load: statistics, and the trigram index's
            # pending list merged (left unmerged, every text search reads it).
            await (await connection.execution_options(isolation_level="AUTOCOMMIT")).exec_driver_sql("VACUUM ANALYZE")
    else:
        async with catalog.engine.begin() as connection:
            await connection.exec_driver_sql("ANALYZE")


async def full_scan_daily(engine, sessions) -> int:  # type: ignore[no-untyped-def]
    """The baseline: daily stats as db/reporting.py computed them before the rollups (main 0564b48):
    every image's latency fetched, and the percentiles sorted out in Python. Returns the groups."""
    image = GeneratedImage
    day = func.strftime("%Y-%m-%d", image.created_at) if engine.dialect.name == "sqlite" \
        else func.to_char(image.created_at, "YYYY-MM-DD")
    group = (image.provider, image.model, image.status, day)
    async with sessions() as session:
        rows = (await session.execute(
            select(*group, func.count(), func.coalesce(func.sum(image.bytes_stored), 0))
            .group_by(*group).order_by(day, image.provider, image.model, image.status))).all()
        calls = (await session.execute(
            select(*group, func.coalesce(func.sum(GenerationAttempt.cost_usd), 0.0),
                   func.count(func.distinct(case(
                       ((GenerationAttempt.cost_usd.is_(None)) & (image.status == "succeeded"), image.id)))))
            .join(image, image.id == GenerationAttempt.image_id).group_by(*group))).all()
        timings = (await session.execute(select(*group, image.latency_ms).where(image.latency_ms.is_not(None)))).all()
    latencies: dict[tuple, list[int]] = defaultdict(list)
    for provider, model, status, when, latency in timings:
        latencies[(provider, model, status, str(when))].append(latency or 0)
    for values in latencies.values():
        ordered = sorted(values)
        for fraction in (0.5, 0.95):
            ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]
    return len(rows) + len(calls)


async def timed(function, runs: int) -> list[float]:  # type: ignore[no-untyped-def]
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        await function()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def summary(name: str, samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {"name": name, "unit": "ms", "median": statistics.median(samples), "min": ordered[0], "max": ordered[-1],
            "p95": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], "runs": len(samples)}


async def measure(url: str, engine_name: str, rows: int, runs: int, only_stats: bool = False) -> list[Comparison]:
    engine, sessions = await open_database(url)
    catalog = Catalog(engine, sessions)
    try:
        started = time.perf_counter()
        await populate(catalog, rows)
        load_seconds = time.perf_counter() - started
        started = time.perf_counter()
        folded = await rollups.fold_all(engine, limit=100_000)
        fold_seconds = time.perf_counter() - started
        if folded:
            async with engine.connect() as connection:
                # What autovacuum does soon after the fold emptied the delta tables: otherwise every
                # read scans their dead rows (and the planner, expecting a million, goes parallel).
                await (await connection.execution_options(isolation_level="AUTOCOMMIT")).exec_driver_sql(
                    "VACUUM ANALYZE image_rollup_deltas, attempt_rollup_deltas, image_rollups")
        comparisons = await _stats(engine, sessions, runs)
        count = await _count(sessions)
        label = f"{engine_name}, {count:,} rows"
        for comparison in comparisons:
            comparison.what = f"{label}: {comparison.what}"
        comparisons[0].note = (f"loaded in {load_seconds:.0f} s, triggers included"
                               + (f"; {folded:,} deltas folded in {fold_seconds:.1f} s" if folded else "")
                               + f"; {await _rollup_rows(engine):,} image_rollups rows")
        if only_stats:
            return comparisons
        comparisons = await _queries(catalog, sessions, rows, runs, label, load_seconds) + comparisons
    finally:
        await engine.dispose()
    return comparisons


async def _stats(engine, sessions, runs: int) -> list[Comparison]:  # type: ignore[no-untyped-def]
    reporting = Reporting(engine, sessions)

    async def overview() -> None:  # what the status page's overview reads
        await reporting.status_totals()
        await reporting.cost_totals()
        await reporting.series(30)
        await reporting.provider_health(7)

    scan = summary("stats, full scan", await timed(lambda: full_scan_daily(engine, sessions), 3))
    stats = summary("stats", await timed(reporting.daily, runs))
    page = summary("overview (status totals, costs, 30-day series, provider health)", await timed(overview, runs))
    return [
        Comparison("stats p95", ours=stats, baseline={}, ratio=stats["p95"], ratio_meaning="p95 ms",
                   target="p95 ≤ 20 ms", met=stats["p95"] <= 20),
        Comparison("stats, rollups vs full scan", ours=stats, baseline=scan, ratio=scan["median"] / stats["median"],
                   ratio_meaning="full scan / rollups (medians)"),
        Comparison(f"{page['name']} p95", ours=page, baseline={}, ratio=page["p95"], ratio_meaning="p95 ms",
                   target="p95 ≤ 20 ms", met=page["p95"] <= 20),
    ]


async def _rollup_rows(engine) -> int:  # type: ignore[no-untyped-def]
    async with engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(ImageRollup)))


async def _queries(catalog: Catalog, sessions, rows: int, runs: int, label: str,  # type: ignore[no-untyped-def]
                   load_seconds: float) -> list[Comparison]:
    middle = rows // 2
    async with sessions() as session:
        row = (await session.execute(
            select(GeneratedImage.created_at, GeneratedImage.id)
            .order_by(GeneratedImage.created_at.desc(), GeneratedImage.id.desc()).offset(middle - 1).limit(1))).one()
    cursor = encode_cursor(row.created_at, row.id)

    def search(**options):  # type: ignore[no-untyped-def]
        base = {"text": None, "provider": None, "status": None, "post_id": None, "created_from": None,
                "created_to": None, "cursor": None, "limit": 20}
        return lambda: catalog.search(**(base | options))

    async def offset_page() -> None:
        async with sessions() as session:
            images = list(await session.scalars(
                select(GeneratedImage).order_by(GeneratedImage.created_at.desc(), GeneratedImage.id.desc())
                .offset(middle).limit(20)))
            assert len(images) == 20

    first = summary("page 1", await timed(search(), runs))
    keyset = summary("page at 500k, keyset", await timed(search(cursor=cursor), runs))
    offset = summary("page at 500k, OFFSET", await timed(offset_page, max(3, runs // 8)))
    text = summary("text search 'lighthouse', page 1", await timed(search(text="lighthouse"), runs))
    rare = summary("text search 'picture 4242', page 1", await timed(search(text="picture 4242 "), max(3, runs // 8)))
    by_id = summary("one image by id", await timed(lambda: catalog.image(middle), runs))
    note = f"loaded in {load_seconds:.0f} s"
    comparisons = [
        Comparison(f"{label}: keyset page at 500k vs page 1", ours=keyset, baseline=first,
                   ratio=keyset["median"] / first["median"], ratio_meaning="page 500k / page 1",
                   target="≤ 1.5", met=keyset["median"] / first["median"] <= 1.5, note=note),
        Comparison(f"{label}: keyset vs OFFSET at 500k", ours=keyset, baseline=offset,
                   ratio=offset["median"] / keyset["median"], ratio_meaning="OFFSET / keyset"),
    ]
    for measured in (first, keyset, text, rare, by_id):
        comparisons.append(Comparison(f"{label}: {measured['name']} p95", ours=measured, baseline={},
                                      ratio=measured["p95"], ratio_meaning="p95 ms", target="p95 ≤ 20 ms",
                                      met=measured["p95"] <= 20))
    return comparisons


async def _count(sessions) -> int:  # type: ignore[no-untyped-def]
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(GeneratedImage)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="2,000 rows, a few runs: proves it works")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--only", choices=["stats"], help="measure only this, keeping the other saved figures")
    parser.add_argument("--engine", choices=["sqlite", "postgresql"], help="only this engine (with --only)")
    arguments = parser.parse_args(argv)
    rows, runs = (2_000, 3) if arguments.tiny else (arguments.rows, 40)
    only_stats = arguments.only == "stats"
    if arguments.engine and not only_stats:
        parser.error("--engine goes with --only: a full run measures both engines")
    comparisons: list[Comparison] = []
    # The SQLite catalogue is kept for bench/api.py, which serves the same rows; it is rebuilt
    # here every time because loading it is part of what this benchmark reports.
    kept = ROOT / "bench" / ".data" / f"catalogue-{rows}.sqlite"
    partial = kept.with_name(kept.name + ".partial")
    kept.parent.mkdir(parents=True, exist_ok=True)
    if arguments.engine != "postgresql":
        kept.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
        comparisons += asyncio.run(measure(f"sqlite+aiosqlite:///{partial}", "SQLite", rows, runs, only_stats))
        partial.rename(kept)
    server = os.environ.get("BLOGIMG_TEST_POSTGRES_URL") or os.environ.get("BLOGIMG_BENCH_POSTGRES_URL")
    notes = []
    if arguments.engine == "sqlite":
        pass
    elif server:
        from tests.postgres import postgres_database

        with postgres_database() as url:
            comparisons += asyncio.run(measure(url, "PostgreSQL", rows, runs, only_stats))
    else:
        notes.append("PostgreSQL skipped: set BLOGIMG_TEST_POSTGRES_URL")
    if only_stats:
        comparisons = _with_saved_figures(comparisons, tiny=arguments.tiny)
    notes += _notes(comparisons)
    path = write_result("database", "Database queries at scale", comparisons, {"notes": notes}, tiny=arguments.tiny)
    for comparison in comparisons:
        print(f"{comparison.what}: {comparison.ratio:.3g} ({comparison.ratio_meaning})"
              + (f" target {comparison.target}: {'met' if comparison.met else 'MISSED'}" if comparison.target else ""))
    print(f"→ {path}")


def _with_saved_figures(stats: list[Comparison], *, tiny: bool) -> list[Comparison]:
    """The last saved run's figures, with its stats measurements replaced by these."""
    saved = (RESULTS / "tiny" if tiny else RESULTS) / "database.json"
    if not saved.exists():
        return stats
    measured = {comparison.what.split(": ")[0] for comparison in stats}  # e.g. "SQLite, 1,000,000 rows"

    def replaced(what: str) -> bool:
        label, _, name = what.partition(": ")
        return label in measured and name.startswith(("stats", "overview"))

    kept = [Comparison(**comparison) for comparison in json.loads(saved.read_text())["comparisons"]
            if not replaced(comparison["what"])]
    return kept + stats


if __name__ == "__main__":
    main()
