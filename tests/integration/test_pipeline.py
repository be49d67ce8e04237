"""The whole pipeline on SQLite with FakeProvider: fallback, retries, concurrency, events, re-runs."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from blogimg.config import Settings
from blogimg.db.jobs import PostsToEnqueue
from blogimg.db.leases import lease_owner_name
from blogimg.db.tables import (
    GeneratedImage,
    GenerationAttempt,
    ImageEvent,
    ImagePromptRow,
    ImageVariant,
)
from blogimg.domain import EventKind, FinishedImage, Outcome, ProgressEvent, Status
from blogimg.pipeline.generate import generate
from blogimg.storage import MemoryStorage
from blogimg.testing import FakeProvider
from tests.support import on_both_engines, registry_with, write_posts

pytestmark = on_both_engines


async def count(database, model, *where) -> int:
    async with database.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model).where(*where))


async def test_fallback_after_failures_is_recorded_in_the_ledger(tmp_path: Path, settings: Settings, database) -> None:
    flaky = FakeProvider("flaky", script=lambda request, n: Outcome.TRANSIENT)
    steady = FakeProvider("steady", cost_usd=0.04)
    posts = write_posts(tmp_path / "posts", 2, markers=1)  # 2 covers + 2 inline = 4 images
    summary = await generate([posts], settings, providers=["flaky", "steady"],
                             registry=registry_with(flaky, steady), storage=MemoryStorage())
    assert (summary.succeeded, summary.failed) == (4, 0)
    assert len(flaky.calls) == 4 * (1 + settings.retry_attempts) and len(steady.calls) == 4
    assert summary.provider_calls == len(flaky.calls) + len(steady.calls)
    assert summary.cost_usd == 4 * 0.04
    assert await count(database, GenerationAttempt, GenerationAttempt.outcome == "transient") == 12
    async with database.sessions() as session:
        images = list(await session.scalars(select(GeneratedImage)))
    assert {image.provider for image in images} == {"steady"}
    assert all(image.cost_usd == 0.04 and image.alt_text and image.lqip for image in images)


async def test_retry_counts_and_final_failure(tmp_path: Path, settings: Settings, database) -> None:
    always_down = FakeProvider("down", script=lambda request, n: Outcome.TRANSIENT)
    posts = write_posts(tmp_path / "posts", 1, markers=0)
    summary = await generate([posts], settings.model_copy(update={"retry_attempts": 3}),
                             providers=["down"], registry=registry_with(always_down), storage=MemoryStorage())
    assert (summary.succeeded, summary.failed, len(always_down.calls)) == (0, 1, 4)
    assert summary.failures[0][1] == "transient"
    async with database.sessions() as session:
        image = await session.scalar(select(GeneratedImage))
    assert (image.status, image.error_code, image.lease_token) == ("failed", "transient", None)


async def test_concurrency_never_exceeds_the_limit(tmp_path: Path, settings: Settings) -> None:
    provider = FakeProvider("slow", latency=0.05)
    posts = write_posts(tmp_path / "posts", 6, markers=1)  # 12 images
    limited = settings.model_copy(update={"max_concurrent": 3})
    summary = await generate([posts], limited, providers=["slow"], registry=registry_with(provider),
                             storage=MemoryStorage())
    assert summary.succeeded == 12
    assert provider.max_in_flight == 3  # reached, never passed


async def test_progress_events_arrive_in_order(tmp_path: Path, settings: Settings) -> None:
    events: list[ProgressEvent] = []
    provider = FakeProvider("f", script=[Outcome.TRANSIENT], latency=0.01)
    posts = write_posts(tmp_path / "posts", 3, markers=1)
    await generate([posts], settings, providers=["f"], registry=registry_with(provider),
                   storage=MemoryStorage(), on_event=events.append)
    kinds = [event.kind for event in events]
    assert kinds[0] is EventKind.QUEUED and events[0].total == 6
    assert kinds[-1] is EventKind.FINISHED and events[-1].done == 6
    per_image: dict[int, list[EventKind]] = {}
    for event in events[1:-1]:
        per_image.setdefault(event.image_id, []).append(event.kind)
    assert len(per_image) == 6
    for kinds_of_one in per_image.values():
        assert kinds_of_one[0] is EventKind.STARTED and kinds_of_one[-1] is EventKind.SUCCEEDED
        assert set(kinds_of_one[1:-1]) == {EventKind.ATTEMPT}
    done_counts = [e.done for e in events if e.kind in (EventKind.SUCCEEDED, EventKind.FAILED)]
    assert done_counts == list(range(1, 7))


async def test_rerun_duplicates_nothing_and_calls_no_provider(tmp_path: Path, settings: Settings, database) -> None:
    storage = MemoryStorage()
    provider = FakeProvider("f")
    posts = write_posts(tmp_path / "posts", 3, markers=2)
    first = await generate([posts], settings, providers=["f"], registry=registry_with(provider), storage=storage)
    assert first.succeeded == 9
    rows = {m: await count(database, m) for m in (GeneratedImage, ImagePromptRow, ImageVariant, GenerationAttempt)}
    files, puts, calls = dict(storage.files), storage.puts, len(provider.calls)
    second = await generate([posts], settings, providers=["f"], registry=registry_with(provider), storage=storage)
    assert (second.queued, second.already_done, second.provider_calls) == (0, 9, 0)
    assert len(provider.calls) == calls and storage.puts == puts and storage.files == files
    assert {m: await count(database, m) for m in rows} == rows
    # Every catalogued file exists, and no variant is recorded twice.
    async with database.sessions() as session:
        keys = list(await session.scalars(select(ImageVariant.storage_key)))
        keys += list(await session.scalars(select(GeneratedImage.storage_key)))
        keys += list(await session.scalars(select(GeneratedImage.thumbnail_key)))
    assert set(keys) <= set(storage.files)


FINISHED = FinishedImage(
    provider="late", model="m", cost_usd=0.0, latency_ms=1, processing_ms=1, width=1, height=1, format="webp",
    bytes_original=1, bytes_stored=1, sha256="0" * 64, storage_key="aa/bb/late.webp", thumbnail_key="aa/bb/t.webp",
    alt_text="", revised_prompt=None, lqip="", dominant_color="#000000", variants=())


async def test_a_lost_lease_cannot_complete_or_fail_the_job(tmp_path: Path, settings: Settings, database) -> None:
    posts = write_posts(tmp_path / "posts", 1, markers=0)
    from blogimg.pipeline.generate import read_posts

    queue = database.queue
    await queue.enqueue(PostsToEnqueue(read_posts([posts], settings)))
    [stale] = await queue.claim(owner="w1", limit=5, lease_seconds=0.0)
    [fresh] = await queue.claim(owner="w2", limit=5, lease_seconds=60)  # lease expired
    assert stale.image_id == fresh.image_id and fresh.attempts == 2
    assert not await queue.fail(stale, "transient", "late")
    assert not await queue.complete(stale, FINISHED)
    assert not await queue.release(stale)
    assert await queue.heartbeat([stale], 60) == set()
    assert await queue.heartbeat([fresh], 60) == {fresh.image_id}
    assert await queue.fail(fresh, "transient", "the holder may")


async def test_dead_local_owner_releases_its_lease_at_once(tmp_path: Path, settings: Settings, database) -> None:
    posts = write_posts(tmp_path / "posts", 1, markers=0)
    from blogimg.pipeline.generate import read_posts

    queue = database.queue
    await queue.enqueue(PostsToEnqueue(read_posts([posts], settings)))
    host = lease_owner_name().rsplit(":", 1)[0]
    await queue.claim(owner=f"{host}:999999", limit=1, lease_seconds=3600)
    assert await queue.claim(owner="other", limit=1, lease_seconds=60) == []
    assert await queue.expire_dead_local_leases(is_alive=lambda pid: pid != 999999) == 1
    assert len(await queue.claim(owner="other", limit=1, lease_seconds=60)) == 1


async def test_garbage_bytes_from_a_provider_fail_as_image_rejected(tmp_path: Path, settings: Settings, database) -> None:
    from blogimg.domain import ProviderImage

    garbage = FakeProvider("garbage", model="g", cost_usd=0.02,
                           handler=lambda request, number: ProviderImage(data=b"<html>502 Bad Gateway</html>",
                                                                         model="g", cost_usd=0.02))
    storage = MemoryStorage()
    summary = await generate([write_posts(tmp_path / "posts", 1, markers=0)], settings,
                             providers=["garbage"], registry=registry_with(garbage), storage=storage)
    assert (summary.succeeded, summary.failed) == (0, 1)
    assert summary.failures[0][1] == "image_rejected" and "not a JPEG, PNG, WebP or AVIF" in summary.failures[0][2]
    assert summary.cost_usd == 0.02  # the call was paid for even though its output was useless
    assert storage.files == {}


async def test_cancel_fails_only_jobs_no_worker_has_started(tmp_path: Path, settings: Settings, database) -> None:
    from blogimg.pipeline.generate import read_posts

    queue = database.queue
    enqueued = await queue.enqueue(PostsToEnqueue(read_posts([write_posts(tmp_path / "posts", 1, markers=2)], settings)))
    [running] = await queue.claim(owner="w", limit=1, lease_seconds=60)
    assert await queue.cancel(enqueued.image_ids) == [i for i in enqueued.image_ids if i != running.image_id]
    async with database.sessions() as session:
        rows = dict((await session.execute(select(GeneratedImage.id, GeneratedImage.error_code))).all())
        events = (await session.execute(select(ImageEvent.image_id, ImageEvent.status)
                                        .where(ImageEvent.status == Status.FAILED))).all()
    assert rows[running.image_id] is None and {rows[i] for i in rows if i != running.image_id} == {"cancelled"}
    assert await queue.cancel(enqueued.image_ids) == []  # nothing queued is left to cancel
    assert len(events) == 2  # each cancellation wrote its event in the same transaction
    assert await queue.complete(running, FINISHED)  # the running job was left to finish


async def test_a_known_failure_is_never_recorded_as_internal(settings: Settings) -> None:
    from blogimg.db.jobs import PromptsToEnqueue
    from blogimg.db.posts import PromptSpec
    from blogimg.domain import PromptKind, Size
    from blogimg.pipeline.batches import run_batch
    from blogimg.pipeline.runtime import open_runtime

    provider = FakeProvider("fake")
    # A size no request may ask for today, as an older version could have stored it.
    stored = PromptSpec("a lighthouse", PromptKind.INLINE, Size(9999, 9999))
    async with open_runtime(settings, providers=["fake"], registry=registry_with(provider),
                            storage=MemoryStorage()) as runtime:
        summary = await run_batch(runtime.database, PromptsToEnqueue(post_id=None, prompts=[stored]),
                                  worker=runtime.worker())
    assert [(code, message) for _, code, message in summary.failures] == [
        ("invalid", "image size '9999x9999' must be between 64 and 8192 pixels per side")]
    assert provider.calls == []
