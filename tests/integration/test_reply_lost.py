"""A commit that reached the database but whose answer was lost with the connection.

The database has made the change; the client sees only that its connection died. The unit is
run again on a fresh connection (``db/failures.py``), and the steps that must not happen twice —
reserving a ledger row, claiming jobs, completing or failing a job, re-queueing failed images —
first look for their own earlier success. Each test here makes exactly that happen and checks
that nothing was done twice.

The fault is real, short of the network itself: the dialect's commit runs, then the driver's
connection is closed and used, so the error is the driver's own, raised from a dead connection,
and SQLAlchemy invalidates that connection just as it would after a lost reply.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import PoolProxiedConnection

from blogimg.config import Settings
from blogimg.db.database import Database
from blogimg.db.failures import connection_lost
from blogimg.db.jobs import BatchEnqueued, FailedToRetry, PostsToEnqueue, PromptsToEnqueue
from blogimg.db.posts import PromptSpec
from blogimg.db.tables import Batch, GeneratedImage, GenerationAttempt, ImageEvent, ImageVariant
from blogimg.domain import FinishedImage, Outcome, Status, StoredVariant
from blogimg.errors import BudgetExceededError
from blogimg.pipeline.budget import Budget
from blogimg.pipeline.generate import read_posts
from tests.support import on_both_engines, write_posts

pytestmark = on_both_engines

OWNER = "reply-lost-worker"


class LostReplies:
    """Loses the answer to chosen commits: the commit is made, then the connection dies.

    Installed as the dialect's ``do_commit`` (SQLAlchemy's ``commit`` event fires *before* the
    DBAPI commit, so it cannot do this). Commits are counted from :meth:`arm`; the replies of
    the numbered ones are lost.
    """

    def __init__(self, database: Database) -> None:
        self.dialect = database.engine.sync_engine.dialect
        self.real_commit = self.dialect.do_commit
        self.lose: set[int] = set()
        self.commits = 0
        self.lost = 0

    def arm(self, *numbers: int) -> None:
        """Lose the replies of these commits from now on (1 = the next one)."""
        self.lose, self.commits, self.lost = set(numbers or (1,)), 0, 0

    def do_commit(self, dbapi_connection: PoolProxiedConnection) -> None:
        self.real_commit(dbapi_connection)  # the transaction is durable from here on
        self.commits += 1
        if self.commits in self.lose:
            self.lost += 1
            driver = dbapi_connection.dbapi_connection  # under the pool's proxy
            assert driver is not None, "a connection that just committed is open"
            driver.close()
            driver.cursor().execute("SELECT 1")  # the driver's own error, from a dead connection
            raise AssertionError("a closed connection answered")  # pragma: no cover


@pytest.fixture
def lost(database: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[LostReplies]:
    replies = LostReplies(database)
    monkeypatch.setattr(replies.dialect, "do_commit", replies.do_commit)
    yield replies


async def queued_images(database: Database, settings: Settings, tmp_path: Path, count: int) -> list[int]:
    """``count`` queued jobs (one cover image per post), in id order."""
    posts = read_posts([write_posts(tmp_path / "posts", count, markers=0)], settings)
    enqueued = await database.queue.enqueue(PostsToEnqueue(posts))
    assert len(enqueued.queued_ids) == count
    return sorted(enqueued.queued_ids)


async def images(database: Database, image_ids: list[int]) -> list[GeneratedImage]:
    async with database.sessions() as session:
        return list(await session.scalars(
            select(GeneratedImage).where(GeneratedImage.id.in_(image_ids)).order_by(GeneratedImage.id)))


async def events(database: Database, image_ids: list[int], status: Status, *, after: int = 0) -> list[tuple[int, Any]]:
    """(image id, batch id) of each ``status`` event of these images with an id above ``after``."""
    async with database.sessions() as session:
        rows = await session.execute(
            select(ImageEvent.image_id, ImageEvent.batch_id)
            .where(ImageEvent.image_id.in_(image_ids), ImageEvent.status == status, ImageEvent.id > after)
            .order_by(ImageEvent.image_id, ImageEvent.id))
        return [(image_id, batch_id) for image_id, batch_id in rows]


async def last_event(database: Database) -> int:
    async with database.sessions() as session:
        return int(await session.scalar(select(func.coalesce(func.max(ImageEvent.id), 0))) or 0)


def finished(name: str, widths: tuple[int, ...] = (48, 80)) -> FinishedImage:
    return FinishedImage(
        provider="fake", model="m", cost_usd=0.04, latency_ms=1, processing_ms=1, width=100, height=100,
        format="webp", bytes_original=10, bytes_stored=10, sha256="0" * 64, storage_key=f"aa/bb/{name}.webp",
        thumbnail_key=f"aa/bb/{name}-thumb.webp", alt_text="", revised_prompt=None, lqip="", dominant_color="#000000",
        variants=tuple(StoredVariant("webp", width, width, 5, f"aa/bb/{name}-{width}.webp") for width in widths))


# --- the fault itself ---------------------------------------------------------------------------


async def test_the_fault_commits_and_then_loses_the_connection(database: Database, lost: LostReplies) -> None:
    # Without this, every test below could pass on a fault that rolled back, or that retrying()
    # does not take for a lost connection.
    lost.arm()
    with pytest.raises(DBAPIError) as raised:
        async with database.engine.begin() as connection:
            await connection.execute(insert(Batch).values(request_hash="committed-unseen"))
    assert raised.value.connection_invalidated and connection_lost(raised.value)
    assert lost.lost == 1
    async with database.engine.connect() as connection:  # a fresh connection, and the row is there
        assert await connection.scalar(
            select(func.count()).select_from(Batch).where(Batch.request_hash == "committed-unseen")) == 1
        assert await connection.scalar(text("SELECT 1")) == 1


# --- the ledger ---------------------------------------------------------------------------------


@pytest.mark.parametrize("budget", [None, Budget(daily_usd=0.04)], ids=["no-budget", "room-for-one-call"])
async def test_a_reservation_whose_reply_was_lost_is_made_once(
        tmp_path: Path, settings: Settings, database: Database, lost: LostReplies, budget: Budget | None) -> None:
    [image_id] = await queued_images(database, settings, tmp_path, 1)
    [job] = await database.queue.claim(owner=OWNER, limit=1, lease_seconds=60)

    lost.arm()
    # With room for one call only, a second reservation would not fit: the repeat must find the first.
    attempt_id = await database.ledger.open_attempt(image_id, owner=OWNER, provider="fake", model="m",
                                                    number=1, estimate=0.04, budget=budget)
    assert lost.lost == 1 and lost.commits >= 2, "the reservation was not tried again"

    async with database.sessions() as session:
        rows = list(await session.scalars(select(GenerationAttempt).where(GenerationAttempt.image_id == image_id)))
    assert [(row.id, row.attempt, row.outcome, row.estimated_cost_usd, row.lease_owner) for row in rows] == [
        (attempt_id, 1, Outcome.PENDING, 0.04, OWNER)]
    assert (await database.ledger.spending()).today == pytest.approx(0.04)
    if budget is not None:  # the one reservation is counted once: the next call does not fit
        with pytest.raises(BudgetExceededError):
            await database.ledger.open_attempt(image_id, owner=OWNER, provider="fake", model="m",
                                               number=2, estimate=0.04, budget=budget)
    assert job.image_id == image_id


# --- the queue ----------------------------------------------------------------------------------


@pytest.mark.parametrize("lease_seconds", [60, 0.01], ids=["live-lease", "lease-shorter-than-the-reconnect-wait"])
async def test_a_claim_whose_reply_was_lost_takes_each_job_once(
        tmp_path: Path, settings: Settings, database: Database, lost: LostReplies, lease_seconds: float) -> None:
    # A live lease: a blind repeat would find the first two taken and claim the third instead.
    # A lease gone by the time of the repeat: a blind repeat would claim the same two again,
    # counting a second attempt against each and reporting a second start.
    first, second, third = await queued_images(database, settings, tmp_path, 3)

    lost.arm()
    claimed = await database.queue.claim(owner=OWNER, limit=2, lease_seconds=lease_seconds)
    assert lost.lost == 1 and lost.commits >= 2, "the claim was not tried again"

    assert [(job.image_id, job.attempts) for job in claimed] == [(first, 1), (second, 1)]
    [token] = {job.lease_token for job in claimed}
    rows = await images(database, [first, second, third])
    assert [(row.status, row.attempts, row.lease_token, row.lease_owner) for row in rows] == [
        (Status.RUNNING, 1, token, OWNER), (Status.RUNNING, 1, token, OWNER), (Status.QUEUED, 0, None, None)]
    assert [image_id for image_id, _ in await events(database, [first, second, third], Status.RUNNING)] == [
        first, second]


async def test_a_completion_whose_reply_was_lost_is_reported_and_written_once(
        tmp_path: Path, settings: Settings, database: Database, lost: LostReplies) -> None:
    [image_id] = await queued_images(database, settings, tmp_path, 1)
    [job] = await database.queue.claim(owner=OWNER, limit=1, lease_seconds=60)
    image = finished("made")

    lost.arm()
    # A repeat's fenced update changes nothing (the lease is gone with the first try): only its
    # look for its own earlier success tells the worker the job is done, not lost to another.
    assert await database.queue.complete(job, image) is True
    assert lost.lost == 1 and lost.commits >= 2, "the completion was not tried again"

    [row] = await images(database, [image_id])
    assert (row.status, row.storage_key, row.lease_token, row.lease_owner) == (
        Status.SUCCEEDED, image.storage_key, None, None)
    async with database.sessions() as session:
        variants = (await session.execute(
            select(ImageVariant.format, ImageVariant.width, ImageVariant.storage_key)
            .where(ImageVariant.image_id == image_id).order_by(ImageVariant.width))).all()
    assert [tuple(variant) for variant in variants] == [
        (variant.format, variant.width, variant.storage_key) for variant in image.variants]
    assert len(await events(database, [image_id], Status.SUCCEEDED)) == 1


async def test_a_completion_someone_else_made_is_not_taken_for_our_own(
        tmp_path: Path, settings: Settings, database: Database, lost: LostReplies) -> None:
    # The other side of the same check: our lease ran out, another worker claimed and completed
    # the job with its own files; our lost-reply repeat must not claim that success as ours.
    [image_id] = await queued_images(database, settings, tmp_path, 1)
    [stale] = await database.queue.claim(owner="stale", limit=1, lease_seconds=0.0)
    [fresh] = await database.queue.claim(owner="fresh", limit=1, lease_seconds=60)
    assert fresh.image_id == stale.image_id == image_id
    assert await database.queue.complete(fresh, finished("theirs"))

    # Our fenced update misses, and the (empty) commit's reply is lost: the repeat finds the job
    # succeeded without a lease, but with the other worker's files, so it is not ours.
    lost.arm()
    assert await database.queue.complete(stale, finished("ours")) is False
    assert lost.lost == 1 and lost.commits >= 2
    lost.arm()
    assert await database.queue.fail(stale, "transient", "late") is False
    assert lost.lost == 1 and lost.commits >= 2
    [row] = await images(database, [image_id])
    assert (row.status, row.storage_key) == (Status.SUCCEEDED, finished("theirs").storage_key)


async def test_a_failure_whose_reply_was_lost_is_reported_and_written_once(
        tmp_path: Path, settings: Settings, database: Database, lost: LostReplies) -> None:
    [image_id] = await queued_images(database, settings, tmp_path, 1)
    [job] = await database.queue.claim(owner=OWNER, limit=1, lease_seconds=60)

    lost.arm()
    assert await database.queue.fail(job, "content_policy", "refused by the provider") is True
    assert lost.lost == 1 and lost.commits >= 2, "the failure was not tried again"

    [row] = await images(database, [image_id])
    assert (row.status, row.error_code, row.error_message, row.lease_token) == (
        Status.FAILED, "content_policy", "refused by the provider", None)
    assert len(await events(database, [image_id], Status.FAILED)) == 1


async def failed_images(database: Database, settings: Settings, tmp_path: Path, count: int) -> list[int]:
    image_ids = await queued_images(database, settings, tmp_path, count)
    for job in await database.queue.claim(owner=OWNER, limit=count, lease_seconds=60):
        assert await database.queue.fail(job, "transient", "the provider was down")
    assert [row.status for row in await images(database, image_ids)] == [Status.FAILED] * count
    return image_ids


@pytest.mark.parametrize("lost_commit", [1, 2, 3], ids=["new-batch", "re-queue", "name-images"])
async def test_retrying_failed_images_whose_reply_was_lost_queues_each_once_in_one_batch(
        tmp_path: Path, settings: Settings, database: Database, lost: LostReplies, lost_commit: int) -> None:
    # Retrying failed images is three transactions: a new batch, the re-queue, naming the
    # batch's images. The reply of one of them is lost. A blind repeat of the re-queue would
    # find no failed image left and answer with an empty batch, its images queued elsewhere.
    image_ids = await failed_images(database, settings, tmp_path, 3)
    since = await last_event(database)
    async with database.sessions() as session:
        batches_before = set(await session.scalars(select(Batch.id)))

    lost.arm(lost_commit)
    enqueued = await database.queue.enqueue(FailedToRetry())
    assert lost.lost == 1, "the reply of no commit was lost"

    assert list(enqueued.image_ids) == list(enqueued.queued_ids) == image_ids
    rows = await images(database, image_ids)
    assert [(row.status, row.attempts, row.error_code, row.batch_id) for row in rows] == [
        (Status.QUEUED, 0, None, enqueued.batch_id)] * 3
    assert await events(database, image_ids, Status.QUEUED, after=since) == [
        (image_id, enqueued.batch_id) for image_id in image_ids]
    async with database.sessions() as session:
        new = {batch.id: batch.image_ids for batch in await session.scalars(select(Batch))
               if batch.id not in batches_before}
    assert new.pop(enqueued.batch_id) == image_ids
    # A new batch whose own reply was lost may leave an empty twin behind, naming nothing.
    assert all(not named for named in new.values()), new
    assert len(new) <= (1 if lost_commit == 1 else 0), new


async def test_retrying_chosen_failed_images_whose_reply_was_lost_queues_only_those(
        tmp_path: Path, settings: Settings, database: Database, lost: LostReplies) -> None:
    first, second, third = await failed_images(database, settings, tmp_path, 3)
    since = await last_event(database)

    lost.arm(2)  # the re-queue's own reply
    enqueued = await database.queue.enqueue(FailedToRetry([first, third]))
    assert lost.lost == 1

    assert list(enqueued.image_ids) == list(enqueued.queued_ids) == [first, third]
    rows = await images(database, [first, second, third])
    assert [(row.status, row.batch_id == enqueued.batch_id) for row in rows] == [
        (Status.QUEUED, True), (Status.FAILED, False), (Status.QUEUED, True)]
    assert await events(database, [first, second, third], Status.QUEUED, after=since) == [
        (first, enqueued.batch_id), (third, enqueued.batch_id)]



# --- units that are repeated as they are: each must be harmless done twice -----------------------


async def test_posts_whose_replies_were_lost_are_saved_and_queued_once(
        tmp_path: Path, settings: Settings, database: Database, lost: LostReplies) -> None:
    # Every other reply lost: the first try of each unit (the batch, each post, naming the
    # batch's images) commits unseen and its repeat goes through.
    posts = read_posts([write_posts(tmp_path / "posts", 2, markers=1)], settings)  # 4 images
    lost.arm(*range(1, 100, 2))
    enqueued = await database.queue.enqueue(PostsToEnqueue(posts))
    assert lost.lost >= 3, "too few replies were lost for this to test anything"

    assert len(enqueued.post_ids) == 2 and len(enqueued.image_ids) == 4
    assert list(enqueued.queued_ids) == list(enqueued.image_ids)
    image_ids = list(enqueued.image_ids)
    async with database.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(GeneratedImage)) == 4
        named = {batch.id: batch.image_ids for batch in await session.scalars(select(Batch))}
    assert [(row.status, row.batch_id) for row in await images(database, image_ids)] == [
        (Status.QUEUED, enqueued.batch_id)] * 4
    assert await events(database, image_ids, Status.QUEUED) == [
        (image_id, enqueued.batch_id) for image_id in sorted(image_ids)]
    assert named.pop(enqueued.batch_id) == image_ids
    assert all(not ids for ids in named.values()), named  # at most the new batch's empty twin


async def test_a_release_whose_reply_was_lost_gives_the_job_back_once(
        tmp_path: Path, settings: Settings, database: Database, lost: LostReplies) -> None:
    [image_id] = await queued_images(database, settings, tmp_path, 1)
    [job] = await database.queue.claim(owner=OWNER, limit=1, lease_seconds=60)
    since = await last_event(database)

    lost.arm()
    # The claim is taken back (counts=False) once: a second time would leave attempts at -1.
    # Not checked: what release answers. Its fenced repeat finds the job given back already and
    # answers False, though the job did go back (the worker then tries to fail it, which the
    # fence refuses too: nothing changes, but the answer is wrong).
    await database.queue.release(job, counts=False)
    assert lost.lost == 1 and lost.commits >= 2, "the release was not tried again"

    [row] = await images(database, [image_id])
    assert (row.status, row.attempts, row.lease_token) == (Status.QUEUED, 0, None)
    assert len(await events(database, [image_id], Status.QUEUED, after=since)) == 1


async def api_request(database: Database, key: str | None) -> tuple[BatchEnqueued, list[int]]:
    enqueued = await database.queue.enqueue(PromptsToEnqueue(
        None, [PromptSpec("a kite over the harbour")], variations=2, idempotency_key=key, request_hash="h"))
    return enqueued, list(enqueued.image_ids)


async def test_an_api_request_with_a_key_whose_reply_was_lost_makes_one_batch(
        database: Database, lost: LostReplies) -> None:
    lost.arm()
    enqueued, image_ids = await api_request(database, "key-1")
    assert lost.lost == 1
    assert len(image_ids) == 2
    async with database.sessions() as session:
        batches = [(batch.id, batch.idempotency_key, batch.image_ids) for batch in await session.scalars(select(Batch))]
    assert batches == [(enqueued.batch_id, "key-1", image_ids)]
    assert await events(database, image_ids, Status.QUEUED) == [(image_id, enqueued.batch_id) for image_id in image_ids]


async def test_an_api_request_without_a_key_whose_reply_was_lost_makes_one_batch(
        database: Database, lost: LostReplies) -> None:
    lost.arm()
    enqueued, image_ids = await api_request(database, None)
    assert lost.lost == 1
    assert len(image_ids) == 2
    assert [row.batch_id for row in await images(database, image_ids)] == [enqueued.batch_id] * 2
    assert await events(database, image_ids, Status.QUEUED) == [(image_id, enqueued.batch_id) for image_id in image_ids]
    async with database.sessions() as session:
        batches = [(batch.id, batch.image_ids) for batch in await session.scalars(select(Batch))]
    assert batches == [(enqueued.batch_id, image_ids)]
