"""Issue 11: a provider that answers 429 is slowed down, not failed — through the real SDKs, worker and chain.

The Google fake answers 429 RESOURCE_EXHAUSTED (no RetryInfo, no Retry-After) to every third
image request and 503 to every seventh, and Google is the only provider. Waits go through a
RecordingSleep, so a 429's long backoff costs no real time.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select

from blogimg.config import Settings
from blogimg.db.jobs import PostsToEnqueue
from blogimg.db.tables import GeneratedImage, GenerationAttempt
from blogimg.domain import ImageRequest, Outcome, Size
from blogimg.errors import ProviderError
from blogimg.pipeline.batches import run_batch
from blogimg.pipeline.chain import ProviderChain
from blogimg.pipeline.generate import read_posts
from blogimg.pipeline.runtime import open_runtime
from blogimg.providers.google import GoogleProvider
from blogimg.providers.openai import OpenAIProvider
from blogimg.storage import MemoryStorage
from tests.fakes.google_api import FakeGemini
from tests.fakes.openai_api import FakeOpenAI
from tests.support import RecordingSleep, point_gemini_at, write_posts

RUNS = 5
BARE_429 = "rate_limited_bare"


def every_third_429_every_seventh_503(prompt: str, number: int) -> str:
    if number % 3 == 0:
        return BARE_429
    return "overloaded" if number % 7 == 0 else "ok"


@dataclass
class Tally:
    """What R runs of a batch came to: images made and failed, requests, 429s, and the waits taken."""

    images: int = 0
    failed: int = 0
    runs_with_a_failure: int = 0
    requests: int = 0
    rate_limited: int = 0
    failure_codes: Counter = field(default_factory=Counter)
    waits: list[float] = field(default_factory=list)
    lowest_concurrency: list[int | None] = field(default_factory=list)
    decreases: int = 0
    claims: Counter = field(default_factory=Counter)  #: claims an image took → images


def paced_chain(chain: ProviderChain, settings: Settings, sleep: RecordingSleep, seed: int) -> ProviderChain:
    """The run's chain again, over the same providers, with waits recorded instead of slept.

    Built from the settings every version of the chain takes, so the same test runs against the
    code before issue 11 (whose rate-limit settings do not exist) and after (which defaults them).
    """
    return ProviderChain(chain.providers, retry_attempts=settings.retry_attempts, retry_delay=settings.retry_delay,
                         max_delay=settings.retry_max_delay, timeout=settings.provider_timeout,
                         breaker_threshold=settings.breaker_threshold, breaker_cooldown=settings.breaker_cooldown,
                         sleep=sleep, rng=random.Random(seed))


async def run_batches(tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch, *, posts: int,
                      concurrency: int, runs: int = RUNS) -> Tally:
    """``runs`` times: a fresh fake, database and batch of ``posts`` × (cover + inline) images, Google only."""
    tally = Tally()
    for run in range(runs):
        folder = tmp_path / f"run-{run}"
        run_settings = settings.model_copy(update={
            "database_url": f"sqlite+aiosqlite:///{folder / 'blogimg.db'}", "max_concurrent": concurrency,
            "breaker_threshold": 5})  # the default circuit breaker, as in production
        with FakeGemini(every_third_429_every_seventh_503) as fake:
            point_gemini_at(monkeypatch, fake.url)
            extracted = read_posts([write_posts(folder / "posts", posts, markers=1)], run_settings)
            async with open_runtime(run_settings, providers=["google"], storage=MemoryStorage()) as runtime:
                assert runtime.chain is not None
                sleep = RecordingSleep()
                runtime.chain = paced_chain(runtime.chain, run_settings, sleep, seed=run)
                summary = await run_batch(runtime.database, PostsToEnqueue(extracted),
                                          worker=runtime.worker(concurrency=concurrency))
                async with runtime.database.sessions() as session:
                    rows = (await session.execute(select(GenerationAttempt.outcome, GenerationAttempt.http_status)
                                                  )).all()
                    claims = list(await session.scalars(select(GeneratedImage.attempts)))
                pacing = getattr(runtime.chain, "pacing", {}).get("google")
        tally.images += summary.succeeded + summary.failed
        tally.failed += summary.failed
        tally.runs_with_a_failure += summary.failed > 0
        tally.failure_codes.update(code for _, code, _ in summary.failures)
        tally.requests += fake.generations
        tally.rate_limited += fake.behaviours.count(BARE_429)
        tally.waits += sleep.delays
        tally.claims.update(claims)
        # The ledger saw every request the server did, each 429 as transient with its status.
        assert len(rows) == fake.generations
        assert Counter(status for outcome, status in rows if status == 429)[429] == fake.behaviours.count(BARE_429)
        if pacing is not None:
            tally.lowest_concurrency.append(pacing.lowest_concurrency)
            tally.decreases += pacing.decreases
    return tally


@pytest.mark.parametrize(("posts", "concurrency"), [(3, 3), (10, 4)], ids=["6-images", "20-images"])
async def test_429s_slow_google_down_and_no_image_fails(tmp_path: Path, provider_settings: Settings,
                                                        monkeypatch: pytest.MonkeyPatch, posts: int,
                                                        concurrency: int) -> None:
    tally = await run_batches(tmp_path, provider_settings, monkeypatch, posts=posts, concurrency=concurrency)
    assert tally.images == RUNS * posts * 2
    assert (tally.failed, dict(tally.failure_codes)) == (0, {})
    assert tally.rate_limited >= tally.requests // 3 - RUNS  # the 429s really happened, a third of all
    # Every run's 429s lowered Google's concurrency below the worker's (to one call at a time).
    assert len(tally.lowest_concurrency) == RUNS and tally.decreases >= RUNS
    assert all(lowest is not None and lowest < concurrency for lowest in tally.lowest_concurrency)
    # 429s waited: at least half the 5 s base (jitter), where a 503's backoff is a few milliseconds.
    patient = [wait for wait in tally.waits if wait >= 2.5]
    assert len(patient) >= tally.rate_limited // 2


async def test_rate_limits_alone_end_in_a_clear_failure_after_every_claim(
        tmp_path: Path, provider_settings: Settings, fake_gemini: FakeGemini) -> None:
    """A provider that never stops answering 429: bounded — queued again until claims run out, then 'rate_limited'."""
    fake_gemini.script = lambda prompt, number: BARE_429
    settings = provider_settings.model_copy(update={"max_job_attempts": 3, "rate_limit_retries": 2})
    posts = read_posts([write_posts(tmp_path / "posts", 1, markers=1)], settings)
    async with open_runtime(settings, providers=["google"], storage=MemoryStorage()) as runtime:
        assert runtime.chain is not None
        sleep = RecordingSleep()
        runtime.chain = ProviderChain.from_settings(runtime.chain.providers, settings, sleep=sleep)
        summary = await run_batch(runtime.database, PostsToEnqueue(posts), worker=runtime.worker())
        async with runtime.database.sessions() as session:
            claims = list(await session.scalars(select(GeneratedImage.attempts)))
    assert (summary.succeeded, summary.failed) == (0, 2)
    assert {code for _, code, _ in summary.failures} == {"rate_limited"}
    assert claims == [3, 3]  # every claim the settings allow, no more
    assert fake_gemini.generations == 2 * 3 * (1 + 2)  # images × claims × (1 + rate-limit retries)
    assert runtime.chain.breakers["google"].failures == 0  # 429s never count against the circuit


async def test_an_image_rate_limited_through_its_allowance_waits_in_the_queue_and_is_made(
        tmp_path: Path, provider_settings: Settings, fake_gemini: FakeGemini) -> None:
    fake_gemini.script = lambda prompt, number: BARE_429 if number <= 3 else "ok"
    settings = provider_settings.model_copy(update={"rate_limit_retries": 1, "max_concurrent": 1})
    posts = read_posts([write_posts(tmp_path / "posts", 1, markers=0)], settings)
    async with open_runtime(settings, providers=["google"], storage=MemoryStorage()) as runtime:
        assert runtime.chain is not None
        runtime.chain = ProviderChain.from_settings(runtime.chain.providers, settings, sleep=RecordingSleep())
        summary = await run_batch(runtime.database, PostsToEnqueue(posts), worker=runtime.worker())
        async with runtime.database.sessions() as session:
            (image,) = list(await session.scalars(select(GeneratedImage)))
    assert (summary.succeeded, summary.failed) == (1, 0)
    assert image.attempts == 2 and fake_gemini.generations == 4  # claim 1: 429, 429; claim 2: 429, ok


@pytest.mark.parametrize(("behaviour", "outcome", "code"), [
    (BARE_429, Outcome.TRANSIENT, "rate_limited"),
    ("rate_limited", Outcome.TRANSIENT, "rate_limited"),
    ("daily_quota", Outcome.QUOTA, "quota"),
    ("no_free_tier", Outcome.QUOTA, "quota"),
])
async def test_google_429s_are_rate_limits_unless_the_quota_is_gone_for_good(
        fake_gemini: FakeGemini, provider_settings: Settings, behaviour: str, outcome: Outcome, code: str) -> None:
    fake_gemini.script = lambda prompt, number: behaviour
    failure = await _failure(GoogleProvider(provider_settings))
    assert (failure.outcome, failure.code, failure.http_status) == (outcome, code, 429), str(failure)


@pytest.mark.parametrize(("behaviour", "outcome", "code"), [
    ("rate_limited", Outcome.TRANSIENT, "rate_limited"),  # RateLimitError, code rate_limit_exceeded
    ("rate_limited_bare", Outcome.TRANSIENT, "rate_limited"),
    ("quota", Outcome.QUOTA, "quota"),  # insufficient_quota
    ("quota_by_type", Outcome.QUOTA, "quota"),
    ("overloaded", Outcome.TRANSIENT, "transient"),
])
async def test_openai_429s_are_rate_limits_unless_the_credit_is_gone(
        fake_openai: FakeOpenAI, provider_settings: Settings, behaviour: str, outcome: Outcome, code: str) -> None:
    fake_openai.script = lambda prompt, number: behaviour
    failure = await _failure(OpenAIProvider(provider_settings))
    assert (failure.outcome, failure.code) == (outcome, code), str(failure)


async def test_a_quota_429_is_called_once_and_pauses_the_provider(tmp_path: Path, provider_settings: Settings,
                                                                  fake_gemini: FakeGemini) -> None:
    fake_gemini.script = lambda prompt, number: "no_free_tier"
    posts = read_posts([write_posts(tmp_path / "posts", 2, markers=1)], provider_settings)
    async with open_runtime(provider_settings, providers=["google"], storage=MemoryStorage()) as runtime:
        assert runtime.chain is not None
        runtime.chain = ProviderChain.from_settings(runtime.chain.providers, provider_settings, sleep=RecordingSleep())
        summary = await run_batch(runtime.database, PostsToEnqueue(posts), worker=runtime.worker(concurrency=1))
    assert summary.failed == 4 and [code for _, code, _ in summary.failures].count("quota") == 1
    assert all(code == "quota" or "google paused" in message for _, code, message in summary.failures)
    assert fake_gemini.generations == 1  # paused after the first: never retried, never queued again


async def _failure(provider: GoogleProvider | OpenAIProvider) -> ProviderError:
    try:
        with pytest.raises(ProviderError) as caught:
            await provider.generate(ImageRequest(prompt="a kite over a beach", size=Size(1024, 1024)))
    finally:
        await provider.aclose()
    return caught.value
