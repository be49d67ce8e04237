"""Rollups stay exact through every write path, on SQLite and PostgreSQL, and rebuild to the same.

The checks recompute from the base tables two ways: in SQL (what ``rebuild-rollups`` writes) and
in plain Python over the rows (what the old full-scan stats computed), so a trigger that drops or
double-counts a change, or a reader that mis-sums, fails here.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import random
from collections import Counter, defaultdict
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import delete, func, select, update

from blogimg.config import Settings
from blogimg.db import rollups
from blogimg.db.database import Database
from blogimg.db.engine import alembic_config
from blogimg.db.jobs import ClaimedJob, FailedToRetry, LostToRemake, PromptsToEnqueue
from blogimg.db.ledger import Ledger
from blogimg.db.posts import PromptSpec
from blogimg.db.tables import (
    AttemptRollup,
    AttemptRollupDelta,
    GeneratedImage,
    GenerationAttempt,
    ImagePromptRow,
    ImageRollup,
    ImageRollupDelta,
    utcnow,
)
from blogimg.domain import AttemptRecord, FinishedImage, Outcome, Status
from tests.support import on_both_engines, run_cli

PROVIDERS = ("openai", "google", "card")
MODELS = ("gpt-image-2", "gemini-image", None)
COSTS = (None, 0.0, 0.04, 0.0123456)
OPERATIONS = ("enqueue", "enqueue", "claim", "claim", "open", "open", "close", "close", "complete", "complete", "fail",
              "release", "requeue", "retry", "cancel", "delete", "remake", "exhausted", "move_day", "delete_call",
              "delete_prompt")


def finished(rng: random.Random, image_id: int) -> FinishedImage:
    return FinishedImage(
        provider=rng.choice(PROVIDERS), model=rng.choice(("gpt-image-2", "gemini-image")),
        cost_usd=rng.choice(COSTS), latency_ms=rng.choice((0, 3, 11, rng.randint(200, 90_000))), processing_ms=5,
        width=64, height=64, format="png", bytes_original=rng.randint(1000, 90_000), bytes_stored=rng.randint(100, 9000),
        sha256="0" * 64, storage_key=f"masters/{image_id}-{rng.random()}.png", thumbnail_key="thumb.webp",
        alt_text="alt", revised_prompt=None, lqip="", dominant_color="#000000", variants=())


class Mix:
    """Random operations through the real queue, ledger and catalogue (and some hand-written SQL)."""

    def __init__(self, database: Database, seed: int) -> None:
        self.database, self.rng = database, random.Random(seed)
        self.held: list[ClaimedJob] = []
        self.open_calls: list[tuple[int, ClaimedJob, str, str | None]] = []
        self.done: Counter[str] = Counter()  #: operations that ran (a chosen one may have had nothing to act on)

    async def image_ids(self, status: Status | None = None) -> list[int]:
        query = select(GeneratedImage.id).order_by(GeneratedImage.id)
        if status is not None:
            query = query.where(GeneratedImage.status == status)
        async with self.database.engine.connect() as connection:
            return list((await connection.scalars(query)).all())

    async def step(self) -> None:
        rng, queue, ledger = self.rng, self.database.queue, self.database.ledger
        choice = rng.choice(OPERATIONS)
        if choice == "enqueue":
            prompts = [PromptSpec(f"prompt {rng.randrange(30)}") for _ in range(rng.randint(1, 4))]
            await queue.enqueue(PromptsToEnqueue(post_id=None, prompts=prompts, variations=rng.randint(1, 2)))
        elif choice == "claim":
            # A lease of 0 s expires at once: the next claim takes the job over and the first
            # holder's completion, failure or release is fenced off.
            self.held += await queue.claim(owner="mix", limit=rng.randint(1, 3), lease_seconds=rng.choice((0, 600)))
        elif choice == "open" and self.held:
            job = rng.choice(self.held)
            if job.image_id not in await self.image_ids():
                return  # deleted while held
            provider, model = rng.choice(PROVIDERS), rng.choice(MODELS)
            call = await ledger.open_attempt(job.image_id, owner="mix", provider=provider, model=model,
                                             number=rng.randint(1, 3), estimate=rng.choice((None, 0.04, 0.011)))
            self.open_calls.append((call, job, provider, model))
        elif choice == "close" and self.open_calls:
            call, job, provider, model = self.open_calls.pop(rng.randrange(len(self.open_calls)))
            outcome = rng.choice([outcome for outcome in Outcome if outcome != Outcome.PENDING])
            self.done[outcome.value] += 1
            await ledger.close_attempt(call, AttemptRecord(
                attempt=1, provider=provider, model=rng.choice((model, "other-model")), outcome=outcome,
                latency_ms=rng.randint(0, 70_000), cost_usd=rng.choice(COSTS),
                error=None if outcome == Outcome.OK else rng.choice((None, f"{outcome.value} said no"))))
        elif choice == "complete" and self.held:
            job = self.held.pop(rng.randrange(len(self.held)))
            await queue.complete(job, finished(rng, job.image_id))
        elif choice == "fail" and self.held:
            job = self.held.pop(rng.randrange(len(self.held)))
            await queue.fail(job, rng.choice(("refused", "transient", "budget")), "no image")
        elif choice == "release" and self.held:
            await queue.release(self.held.pop(rng.randrange(len(self.held))), counts=rng.random() < 0.5)
        elif choice == "requeue" and (failed := await self.image_ids(Status.FAILED)):
            await queue.requeue(rng.choice(failed))
        elif choice == "retry" and (failed := await self.image_ids(Status.FAILED)):
            await queue.enqueue(FailedToRetry(image_ids=rng.sample(failed, min(len(failed), 2))))
        elif choice == "cancel" and (queued := await self.image_ids(Status.QUEUED)):
            await queue.cancel(rng.sample(queued, min(len(queued), rng.randint(1, 3))))
        elif choice == "delete" and (every := await self.image_ids()):
            await self.database.catalog.delete_image(rng.choice(every))
        elif choice == "remake" and (made := await self.image_ids(Status.SUCCEEDED)):
            image_id = rng.choice(made)
            async with self.database.engine.connect() as connection:
                key = await connection.scalar(select(GeneratedImage.storage_key).where(GeneratedImage.id == image_id))
            await queue.enqueue(LostToRemake({image_id: key}))  # what cleanup --remake does
        elif choice == "exhausted":
            await queue.fail_exhausted(max_attempts=2)
        elif choice == "move_day":
            await self.move_day()
        elif choice == "delete_call":
            async with self.database.engine.begin() as connection:  # hand-written SQL counts too
                first = await connection.scalar(select(func.min(GenerationAttempt.id)))
                await connection.execute(delete(GenerationAttempt).where(GenerationAttempt.id == first))
        elif choice == "delete_prompt" and rng.random() < 0.3:
            async with self.database.engine.begin() as connection:  # cascades to images and their calls
                prompt = await connection.scalar(select(ImagePromptRow.id).order_by(func.random()).limit(1))
                await connection.execute(delete(ImagePromptRow).where(ImagePromptRow.id == prompt))
        else:
            return  # nothing to do it to yet
        self.done[choice] += 1

    async def move_day(self) -> None:
        # Rows of other days, as an older catalogue has; written by hand, so only a trigger sees it.
        back = timedelta(days=self.rng.randint(1, 40))
        async with self.database.engine.begin() as connection:
            image = await connection.execute(select(GeneratedImage.id, GeneratedImage.created_at)
                                             .order_by(func.random()).limit(1))
            for image_id, created in image:
                await connection.execute(update(GeneratedImage).where(GeneratedImage.id == image_id)
                                         .values(created_at=created - back))
            call = await connection.execute(select(GenerationAttempt.id, GenerationAttempt.started_at)
                                            .order_by(func.random()).limit(1))
            for call_id, started in call:
                await connection.execute(update(GenerationAttempt).where(GenerationAttempt.id == call_id)
                                         .values(started_at=started - back))


async def kept_and_recomputed(database: Database) -> tuple[tuple[dict, dict], tuple[dict, dict]]:
    await rollups.fold_all(database.engine)
    dialect = database.engine.dialect.name
    async with database.engine.connect() as connection:
        for delta in (ImageRollupDelta, AttemptRollupDelta):
            assert await connection.scalar(select(func.count()).select_from(delta)) == 0
        images = rollups.nonzero((await connection.execute(select(
            *[ImageRollup.__table__.c[name] for name in (*rollups.IMAGE_KEY, *rollups.IMAGE_MEASURES)]))).all())
        calls = rollups.nonzero((await connection.execute(select(
            *[AttemptRollup.__table__.c[name] for name in (*rollups.ATTEMPT_KEY, *rollups.ATTEMPT_MEASURES)]))).all())
        expected_images = rollups.nonzero((await connection.execute(rollups.recomputed_images(dialect))).all())
        expected_calls = rollups.nonzero((await connection.execute(rollups.recomputed_attempts(dialect))).all())
    return (images, expected_images), (calls, expected_calls)


async def assert_exact(database: Database) -> None:
    (images, expected_images), (calls, expected_calls) = await kept_and_recomputed(database)
    assert images == expected_images
    assert calls == expected_calls
    await assert_reports_match_the_rows(database)


async def assert_reports_match_the_rows(database: Database) -> None:
    """What Reporting says from the rollups equals what plain Python says from every row."""
    reporting = database.reporting
    async with database.engine.connect() as connection:
        rows = (await connection.execute(select(
            GeneratedImage.id, GeneratedImage.provider, GeneratedImage.model, GeneratedImage.status,
            GeneratedImage.created_at, GeneratedImage.latency_ms, GeneratedImage.bytes_stored))).all()
        calls = (await connection.execute(select(GenerationAttempt.image_id, GenerationAttempt.cost_usd))).all()
        bounds = await rollups.latency_bounds(connection)
        by_status = dict((await connection.execute(
            select(GeneratedImage.status, func.count()).group_by(GeneratedImage.status))).all())
    assert await reporting.status_totals() == {status: by_status.get(status, 0) for status in Status}
    spending = await Ledger(database.sessions).spending()
    totals = await reporting.cost_totals()
    assert (totals.today_usd, totals.month_usd) == (round(spending.today, 6), round(spending.this_month, 6))

    cost: dict[int, float] = defaultdict(float)
    unknown: set[int] = set()
    for image_id, call_cost in calls:
        cost[image_id] += call_cost or 0.0
        if call_cost is None:
            unknown.add(image_id)
    groups: dict[tuple, list] = defaultdict(lambda: [0, 0, 0.0, 0, []])
    for image_id, provider, model, status, created, latency, stored in rows:
        group = groups[(provider, model, status, created.date().isoformat())]
        group[0] += 1
        group[1] += stored or 0
        group[2] += cost[image_id]
        group[3] += status == Status.SUCCEEDED and image_id in unknown
        if latency is not None:
            group[4].append(latency)

    def bucket_bound(values: list[int], percent: int) -> float | None:
        # The exact nearest-rank value (0-based rank floor(p·(n−1)/100 + ½)), reported as the
        # upper bound of its bucket.
        if not values:
            return None
        exact = sorted(values)[(percent * (len(values) - 1) + 50) // 100]
        return float(bounds[bisect.bisect_left(bounds, exact)])

    expected = {}
    for (provider, model, status, day), (count, stored, spent, unpriced, latencies) in groups.items():
        everything = sum(g[0] for (p, m, _, d), g in groups.items() if (p, m, d) == (provider, model, day))
        made = sum(g[0] for (p, m, s, d), g in groups.items() if (p, m, s, d) == (provider, model, Status.SUCCEEDED, day))
        expected[(provider, model, status, day)] = (
            count, round(made / everything, 4), bucket_bound(latencies, 50), bucket_bound(latencies, 95),
            round(spent, 6), unpriced, stored)
    daily = await reporting.daily()
    assert {(row.provider, row.model, row.status, row.day): (
        row.count, row.success_rate, row.latency_p50_ms, row.latency_p95_ms, row.cost_usd, row.unknown_cost_images,
        row.bytes_stored) for row in daily} == expected
    assert [(row.day, row.provider or "", row.model or "") for row in daily] == sorted(
        (row.day, row.provider or "", row.model or "") for row in daily)


@on_both_engines
async def test_a_random_mix_of_writes_keeps_the_rollups_exact(database: Database) -> None:
    mix = Mix(database, seed=12)
    for step in range(1, 241):
        await mix.step()
        if step % 60 == 0:
            await assert_exact(database)
    # Every kind of write ran, and calls closed with most outcomes.
    assert set(OPERATIONS) <= set(mix.done), mix.done
    assert sum(mix.done[outcome.value] > 0 for outcome in Outcome) >= 4, mix.done


@on_both_engines
async def test_rebuild_from_scratch_gives_what_the_triggers_kept(database: Database) -> None:
    mix = Mix(database, seed=7)
    for _ in range(150):
        await mix.step()
    (images, _), (calls, _) = await kept_and_recomputed(database)
    async with database.engine.begin() as connection:  # lose them all
        for table in (ImageRollup, AttemptRollup):
            await connection.execute(delete(table))
    report = await rollups.rebuild(database.engine)
    (rebuilt_images, _), (rebuilt_calls, _) = await kept_and_recomputed(database)
    assert (rebuilt_images, rebuilt_calls) == (images, calls) and images and calls
    assert report.images == sum(measures[0] for measures in images.values())
    await assert_reports_match_the_rows(database)


@on_both_engines
async def test_series_health_and_costs_read_the_rollups(database: Database) -> None:
    await database.queue.enqueue(PromptsToEnqueue(post_id=None, prompts=[PromptSpec(f"a kite {n}") for n in range(4)]))
    jobs = await database.queue.claim(owner="w", limit=4, lease_seconds=60)
    ledger, rng = database.ledger, random.Random(3)
    outcomes = (Outcome.OK, Outcome.REFUSED, Outcome.OK, Outcome.TRANSIENT)
    for job, outcome in zip(jobs, outcomes, strict=True):
        call = await ledger.open_attempt(job.image_id, owner="w", provider="openai", model="gpt-image-2", number=1,
                                         estimate=0.04)
        await ledger.close_attempt(call, AttemptRecord(1, "openai", "gpt-image-2", outcome, 1000 + job.image_id,
                                                       {Outcome.OK: 0.04, Outcome.REFUSED: 0.01}.get(outcome, 0.0),
                                                       error=None if outcome == Outcome.OK else f"{outcome} error"))
        if outcome == Outcome.OK:
            await database.queue.complete(job, dataclasses.replace(finished(rng, job.image_id), provider="openai"))
        else:
            await database.queue.fail(job, outcome.value, "no")
    await ledger.open_attempt(jobs[0].image_id, owner="w", provider="google", model=None, number=2, estimate=0.5)

    series = await database.reporting.series(days=3)
    today = utcnow().date().isoformat()
    assert [entry.day for entry in series][-1] == today and len(series) == 3
    assert series[0].succeeded == series[0].failed == 0 and series[0].latency_p50_ms is None
    assert (series[-1].succeeded, series[-1].failed, series[-1].cost_usd) == (2, 2, 0.09)

    health = {row.provider: row for row in await database.reporting.provider_health(days=7)}
    openai = health["openai"]
    assert (openai.calls, openai.ok, openai.success_rate, openai.refusals, openai.cost_usd) == (4, 2, 0.5, 1, 0.09)
    assert openai.last_error == "transient error" and openai.last_error_at is not None
    slowest = 1000 + max(job.image_id for job in jobs)  # the nearest-rank p95 of 4 calls is the slowest
    assert slowest <= openai.latency_p95_ms <= slowest * 2 ** (1 / 8) + 1  # within its bucket
    assert (openai.accepted_images, openai.cost_per_accepted_image) == (2, 0.045)  # the refusal's cost too
    google = health["google"]  # one call still pending: counted, but neither a success nor a failure yet
    assert (google.calls, google.ok, google.success_rate, google.latency_p50_ms) == (1, 0, None, None)
    totals = await database.reporting.cost_totals()
    assert totals.today_usd == totals.month_usd == pytest.approx(0.09 + 0.5)  # the pending call's estimate


@on_both_engines
async def test_a_catalogue_from_0007_is_backfilled_and_the_command_rebuilds_it(
        tmp_path: Path, settings: Settings, database_url: str) -> None:
    # Rows written before the rollups existed: the migration must count them.
    engine = sa.create_engine(database_url.replace("+aiosqlite", ""))
    if engine.dialect.name == "sqlite":
        Path(engine.url.database).parent.mkdir(parents=True, exist_ok=True)
    with engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "0007")
    with engine.begin() as connection:
        for statement in (
            "INSERT INTO blog_posts (id, slug, title, markdown, summary, tags, language, images_enabled, created_at, "
            "updated_at) VALUES (1, 'p', 'P', '', '', '[]', 'en', true, '2026-01-01', '2026-01-01')",
            "INSERT INTO image_prompts (id, post_id, kind, position, prompt, size, fingerprint, alt_hint, heading, "
            "created_at, updated_at) VALUES (1, 1, 'inline', 0, 'a lighthouse', '1024x1024', 'f', '', '', "
            "'2026-01-01', '2026-01-01')",
            "INSERT INTO generated_images (id, prompt_id, post_id, variation, status, attempts, tags, provider, model, "
            "latency_ms, bytes_stored, created_at, updated_at) VALUES (5, 1, 1, 0, 'succeeded', 1, '[]', 'card', "
            "'card-1', 40, 900, '2026-01-02 23:59:59', '2026-01-02')",
            "INSERT INTO generated_images (id, prompt_id, post_id, variation, status, attempts, tags, created_at, "
            "updated_at) VALUES (6, 1, 1, 1, 'failed', 1, '[]', '2026-01-03', '2026-01-03')",
            "INSERT INTO generation_attempts (id, image_id, attempt, provider, outcome, latency_ms, cost_usd, "
            "started_at) VALUES (1, 5, 1, 'card', 'ok', 40, 0.5, '2026-01-02')",
            "INSERT INTO generation_attempts (id, image_id, attempt, provider, outcome, latency_ms, started_at) "
            "VALUES (2, 6, 1, 'openai', 'refused', 3, '2026-01-03')",
        ):
            connection.exec_driver_sql(statement)
    engine.dispose()

    database = await Database.open(database_url)  # upgrades through 0008
    try:
        await assert_exact(database)
        daily = await database.reporting.daily()
        assert [(row.day, row.provider, row.status, row.count, row.cost_usd) for row in daily] == [
            ("2026-01-02", "card", Status.SUCCEEDED, 1, 0.5), ("2026-01-03", None, Status.FAILED, 1, 0.0)]
        async with database.engine.begin() as connection:  # rollups lost or wrong: the command makes them right
            await connection.execute(delete(ImageRollup))
            await connection.execute(update(AttemptRollup).values(calls=AttemptRollup.calls + 5))
    finally:
        await database.close()
    result = run_cli("rebuild-rollups", data=tmp_path / "data", cwd=tmp_path, BLOGIMG_DATABASE_URL=database_url)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("rebuilt rollups: 2 images and 2 provider calls"), result.stdout
    database = await Database.open(database_url)
    try:
        await assert_exact(database)
    finally:
        await database.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_concurrent_workers_on_postgresql_neither_deadlock_nor_lose_a_change(database: Database) -> None:
    await database.queue.enqueue(PromptsToEnqueue(post_id=None, prompts=[PromptSpec(f"p{n}") for n in range(60)],
                                                  variations=2))

    async def worker(number: int) -> None:
        rng = random.Random(number)
        while jobs := await database.queue.claim(owner=f"w{number}", limit=rng.randint(1, 3), lease_seconds=60):
            for job in jobs:  # every worker on the same day, provider and model: the hottest rollup row
                call = await database.ledger.open_attempt(job.image_id, owner=f"w{number}", provider="openai",
                                                          model="gpt-image-2", number=job.attempts, estimate=0.04)
                await database.ledger.close_attempt(call, AttemptRecord(job.attempts, "openai", "gpt-image-2",
                                                                        Outcome.OK, rng.randint(500, 9000), 0.04))
                if rng.random() < 0.8:
                    await database.queue.complete(job, finished(rng, job.image_id))
                else:
                    await database.queue.fail(job, "transient", "busy")

    async def reader() -> None:
        for _ in range(20):  # folding while workers write
            await database.reporting.daily()
            await asyncio.sleep(0.01)

    await asyncio.gather(*(worker(number) for number in range(8)), reader())
    assert (await database.reporting.status_totals())[Status.QUEUED] == 0
    await assert_exact(database)
