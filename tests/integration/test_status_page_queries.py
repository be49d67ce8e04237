"""The status page's own reads, on SQLite and PostgreSQL: batches in progress with their counts and
ETA (db/batch_status.py), and a page of posts with their images in order and their cost
(db/post_images.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from blogimg.config import Settings
from blogimg.db.batch_status import BatchStatusReader
from blogimg.db.database import Database
from blogimg.db.jobs import PostsToEnqueue, PromptsToEnqueue
from blogimg.db.post_images import PostImagesReader
from blogimg.db.posts import PromptSpec
from blogimg.domain import AttemptRecord, Outcome, PromptKind, Size, Status
from blogimg.pipeline.generate import read_posts
from tests.support import on_both_engines, write_posts

pytestmark = on_both_engines


def _prompts(*texts: str) -> PromptsToEnqueue:
    return PromptsToEnqueue(post_id=None, prompts=[PromptSpec(text, PromptKind.INLINE, Size(1024, 1024))
                                                   for text in texts])


async def test_batches_in_progress_count_by_status_and_estimate_the_time_left(database: Database) -> None:
    queue, reader = database.queue, BatchStatusReader(database.sessions)
    assert await reader.in_progress() == []

    working = await queue.enqueue(_prompts("a red kite", "a blue kite", "a green kite", "a white kite"))
    finished = await queue.enqueue(_prompts("a paper boat"))
    # The finished batch: claimed and failed, so nothing of it is left to do.
    (boat,) = await queue.claim(owner="test", limit=1, lease_seconds=60, batch_id=finished.batch_id)
    await queue.fail(boat, "invalid", "no")
    # The working batch: one failed, one running, two queued.
    first, second = await queue.claim(owner="test", limit=2, lease_seconds=60, batch_id=working.batch_id)
    await queue.fail(first, "refused", "no")

    (batch,) = await reader.in_progress()
    assert batch.id == working.batch_id
    assert batch.counts == {Status.QUEUED: 2, Status.RUNNING: 1, Status.SUCCEEDED: 0, Status.FAILED: 1}
    assert (batch.total, batch.finished, batch.remaining) == (4, 1, 3)
    assert batch.finished_recently == 1
    assert batch.per_minute is not None and batch.eta_seconds is not None
    # Three left at the pace one finished: three times as long as that one took.
    assert batch.eta_seconds == pytest.approx(3 * batch.window_seconds, rel=0.01)

    await queue.fail(second, "refused", "no")
    for job in await queue.claim(owner="test", limit=2, lease_seconds=60, batch_id=working.batch_id):
        await queue.fail(job, "refused", "no")
    assert await reader.in_progress() == []


async def test_a_young_batch_with_nothing_finished_has_no_eta(database: Database) -> None:
    await database.queue.enqueue(_prompts("a lantern"))
    (batch,) = await BatchStatusReader(database.sessions).in_progress()
    assert batch.finished_recently == 0 and batch.per_minute is None and batch.eta_seconds is None


async def test_posts_list_their_images_in_order_and_sum_what_their_calls_cost(
        database: Database, settings: Settings, tmp_path: Path) -> None:
    (post,) = read_posts([write_posts(tmp_path / "posts", 1, markers=3)], settings)
    enqueued = await database.queue.enqueue(PostsToEnqueue([post]))
    post_id = enqueued.post_ids[0]
    other = await database.queue.enqueue(_prompts("an image of no post of ours"))
    reader = PostImagesReader(database.sessions)

    images = (await reader.images([post_id]))[post_id]
    prompts = await database.posts.prompts(post_id)
    assert [image.position for image in images] == sorted(prompt.position for prompt in prompts)
    assert [image.prompt for image in images] == [prompt.prompt for prompt in sorted(prompts, key=lambda p: p.position)]
    assert all(image.status is Status.QUEUED and image.thumbnail_key is None for image in images)

    # Calls: two priced (one failed: it still cost), one of unknown price; another post's call apart.
    for image_id, cost in ((images[0].id, 0.04), (images[1].id, 0.02), (images[2].id, None),
                           (other.image_ids[0], 1.0)):
        attempt = await database.ledger.open_attempt(image_id, owner="test", provider="openai", model="m",
                                                     number=1, estimate=0.04)
        await database.ledger.close_attempt(attempt, AttemptRecord(
            1, "openai", "m", Outcome.OK if cost != 0.02 else Outcome.TRANSIENT, 1000, cost))
    costs = await reader.costs([post_id])
    assert costs[post_id].cost_usd == pytest.approx(0.06)
    assert costs[post_id].unknown_cost_calls == 1
    assert await reader.images([]) == {} and await reader.costs([]) == {}
