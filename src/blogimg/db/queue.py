"""The job queue: rows of ``generated_images``. Every state change of a job lives here, and only here.

A worker *claims* jobs with one atomic UPDATE … RETURNING, taking queued rows and running rows
whose lease has expired, and stamps them with a fresh lease token. Every later change
(heartbeat, completion, failure, release) names that token in its WHERE clause, so a worker
that lost its lease — paused, partitioned, presumed dead — changes nothing when it wakes up.
On PostgreSQL the candidate rows are picked with FOR UPDATE SKIP LOCKED so workers never wait
on each other; on SQLite the statement runs under BEGIN IMMEDIATE, which serialises writers.

Every change of status goes through :meth:`JobQueue._changed` in the transaction that makes it:
that is where its event row is written (and where later side effects of a change, such as
rollups or a webhook outbox, belong), so a reader never sees a report of a change that did not
commit, nor a change without its report.

A lost connection is retried (``db/failures.py``): every method here is a unit that may run
again, and the few whose first try may have committed unseen (a claim, a completion, a failure)
look for their own earlier success before doing anything twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from blogimg.db import posts
from blogimg.db.batch_rows import existing_batch, name_images, new_batch
from blogimg.db.failures import reconnecting, retrying, retrying_conflicts
from blogimg.db.jobs import (
    BatchEnqueued,
    ClaimedJob,
    JobContext,
    LostToRemake,
    PostsToEnqueue,
    PromptsToEnqueue,
    Work,
)
from blogimg.db.leases import NO_LEASE, claimable, ended_as, expire_dead_local, fenced
from blogimg.db.tables import (
    Batch,
    BlogPost,
    GeneratedImage,
    ImageEvent,
    ImagePromptRow,
    ImageVariant,
    utcnow,
)
from blogimg.domain import ExtractedPost, FinishedImage, Status
from blogimg.errors import JobGoneError

ChangedRows = Sequence[tuple[int, int | None]]  #: (image id, batch id) of each job that changed


class JobQueue:
    """Enqueue, claim, heartbeat, complete, fail, release, requeue and cancel jobs."""

    def __init__(self, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.engine, self.sessions = engine, sessions

    # Enqueueing ----------------------------------------------------------------------------

    async def enqueue(self, work: Work) -> BatchEnqueued:
        """Make a batch of ``work``; new jobs queued, failed ones re-queued, finished ones kept."""
        if isinstance(work, PromptsToEnqueue):
            return await self._enqueue_request(work)
        if isinstance(work, LostToRemake):
            return await self.remake(work.lost)
        batch_id = await new_batch(self.sessions)
        if isinstance(work, PostsToEnqueue):
            image_ids, queued, post_ids = await self._enqueue_posts(work.posts, batch_id)
        else:
            image_ids, post_ids = await self._enqueue_failed(work.image_ids, batch_id), []
            queued = image_ids
        await name_images(self.sessions, batch_id, image_ids)
        return BatchEnqueued(batch_id, tuple(image_ids), tuple(queued), post_ids=tuple(post_ids))

    async def _enqueue_posts(self, items: Sequence[ExtractedPost], batch_id: int) -> tuple[list[int], list[int], list[int]]:
        # One transaction per post: a crash leaves each post either wholly queued or untouched,
        # and a long run never holds SQLite's write lock for more than one post.
        image_ids: list[int] = []
        queued: list[int] = []
        post_ids: list[int] = []
        for post in items:
            post_id, named, new = await self._enqueue_post(post, batch_id)
            image_ids += named
            queued += new
            post_ids.append(post_id)
        return image_ids, queued, post_ids

    @retrying_conflicts  # two runs saving one post at once: the loser finds the winner's rows
    async def _enqueue_post(self, post: ExtractedPost, batch_id: int) -> tuple[int, list[int], list[int]]:
        async with self.sessions.begin() as session:
            row, prompts = await posts.save_post(session, post)
            named, new = await self._jobs(session, batch_id, prompts, 1, None, replace_options=False)
            return row.id, named, new

    async def _enqueue_request(self, work: PromptsToEnqueue) -> BatchEnqueued:
        # Everything — batch row, new prompts, jobs, events — in one transaction, so a repeated
        # request (same Idempotency-Key) finds the whole batch or none of it. Two concurrent
        # requests with one key race on the batch's unique key: the loser waits for the winner's
        # commit, then answers with the winner's batch. Requests racing on a new prompt (or the
        # post that holds API prompts) are tried again, and find the winner's rows.
        if work.idempotency_key:  # an empty key is no key
            existing = await existing_batch(self.sessions, work.idempotency_key, work.request_hash)
            if existing:
                return existing
        # Without a key of the client's, one of our own: a commit whose reply was lost is found by
        # the retry instead of being made again as a second batch.
        key = work.idempotency_key or f"blogimg-once-{uuid.uuid4().hex}"
        return await retrying(lambda _attempt: self._enqueue_request_once(work, key), conflicts=True)

    async def _enqueue_request_once(self, work: PromptsToEnqueue, key: str) -> BatchEnqueued:
        try:
            async with self.sessions.begin() as session:
                batch = Batch(idempotency_key=key, request_hash=work.request_hash)
                session.add(batch)
                await session.flush()  # the unique key: a concurrent twin stops here
                prompts = await posts.request_prompts(session, work.post_id, work.prompts)
                image_ids, queued = await self._jobs(session, batch.id, prompts, work.variations, work.options,
                                                     replace_options=True)
                batch.image_ids = image_ids
                return BatchEnqueued(batch.id, tuple(image_ids), tuple(queued))
        except IntegrityError:
            existing = await existing_batch(self.sessions, key, work.request_hash)
            if existing is None:
                raise  # not the key: a prompt's race, which retrying() runs again
            return existing

    async def _jobs(self, session: AsyncSession, batch_id: int, prompts: Sequence[ImagePromptRow],
                    variations: int, options: dict[str, Any] | None, *,
                    replace_options: bool) -> tuple[list[int], list[int]]:
        """One job per prompt and variation; returns (every job named, the jobs queued now).

        An API request decides the options of the jobs it queues (``replace_options``); a post
        read from disk has none of its own, so a failed job it re-queues keeps those it had.
        """
        if not prompts:
            return [], []
        existing = {
            (image.prompt_id, image.variation): image
            for image in await session.scalars(select(GeneratedImage).where(
                GeneratedImage.prompt_id.in_([prompt.id for prompt in prompts]),
                GeneratedImage.variation < variations))
        }
        images: list[GeneratedImage] = []
        queued: list[GeneratedImage] = []
        changed: list[GeneratedImage] = []  #: new or failed before: these, and only these, change status
        for prompt in prompts:
            for variation in range(variations):
                image = existing.get((prompt.id, variation))
                if image is None:
                    image = GeneratedImage(prompt_id=prompt.id, post_id=prompt.post_id, variation=variation,
                                           status=Status.QUEUED, options=options, attempts=0)
                    session.add(image)
                    changed.append(image)
                elif image.status == Status.FAILED:
                    _reset_for_retry(image, options if replace_options else image.options)
                    changed.append(image)
                images.append(image)
                if image.status != Status.SUCCEEDED:
                    # Queued or running jobs (perhaps left by a killed run) join this batch: a live
                    # lease stays with its holder, a dead one is claimed again by a worker.
                    image.batch_id = batch_id
                    queued.append(image)
        await session.flush()  # one round trip for the whole request; assigns the new ids
        await self._changed(session, [(image.id, batch_id) for image in changed], Status.QUEUED)
        return [image.id for image in images], [image.id for image in queued]

    @reconnecting
    async def _enqueue_failed(self, image_ids: Sequence[int] | None, batch_id: int) -> list[int]:
        async with self.sessions.begin() as session:
            # The batch is new, so only a try that committed unseen can have put images in it
            # already: a repeat finds them there instead of finding no failed images left.
            chosen = (select(GeneratedImage)
                      .where(or_(GeneratedImage.status == Status.FAILED, GeneratedImage.batch_id == batch_id))
                      .order_by(GeneratedImage.id))
            if image_ids is not None:
                chosen = chosen.where(GeneratedImage.id.in_(list(image_ids)))
            images = list(await session.scalars(chosen))
            failed = [image for image in images if image.status == Status.FAILED]
            for image in failed:
                _reset_for_retry(image, image.options)
                image.batch_id = batch_id
            await session.flush()
            await self._changed(session, [(image.id, batch_id) for image in failed], Status.QUEUED)
            return [image.id for image in images]

    async def requeue(self, image_id: int) -> Status | None:
        """Put one failed image back in the queue (in its batch); its status before, None if unknown."""
        async with self.sessions.begin() as session:
            image = await session.get(GeneratedImage, image_id)
            if image is None:
                return None
            before = image.status
            if before == Status.FAILED:
                _reset_for_retry(image, image.options)
                await session.flush()
                await self._changed(session, [(image.id, image.batch_id)], Status.QUEUED)
            return before

    async def remake(self, lost: Mapping[int, str]) -> BatchEnqueued:
        """Queue again, as one new batch, succeeded images whose stored master is gone for good.

        ``lost`` maps each image to the master key found missing; a row changes only while it is
        still succeeded and still points at that key. Its variant rows and file keys go (the files
        are gone; the worker's completion writes fresh ones), so a worker will call a provider again.
        """
        batch_id = await new_batch(self.sessions)
        async with self.sessions.begin() as session:
            changed: list[tuple[int, int | None]] = []
            for image_id, key in sorted(lost.items()):
                changed += (await session.execute(
                    update(GeneratedImage)
                    .where(GeneratedImage.id == image_id, GeneratedImage.status == Status.SUCCEEDED,
                           GeneratedImage.storage_key == key)
                    .values(status=Status.QUEUED, error_code=None, error_message=None, attempts=0, batch_id=batch_id,
                            storage_key=None, thumbnail_key=None, sha256=None, bytes_stored=None, updated_at=utcnow())
                    .returning(GeneratedImage.id, GeneratedImage.batch_id)
                    .execution_options(synchronize_session=False))).all()
            image_ids = [image_id for image_id, _ in changed]
            await session.execute(delete(ImageVariant).where(ImageVariant.image_id.in_(image_ids)))
            await session.execute(update(Batch).where(Batch.id == batch_id).values(image_ids=image_ids))
            await self._changed(session, changed, Status.QUEUED)
        return BatchEnqueued(batch_id, tuple(image_ids), tuple(image_ids))

    @reconnecting
    async def statuses(self, image_ids: Iterable[int]) -> dict[int, Status]:
        """The status of each of these images that exists; a read, which changes nothing."""
        async with self.sessions() as session:
            rows = await session.execute(select(GeneratedImage.id, GeneratedImage.status)
                                         .where(GeneratedImage.id.in_(list(image_ids))))
            return {image_id: status for image_id, status in rows}

    async def cancel(self, image_ids: Iterable[int]) -> list[int]:
        """Fail queued jobs as ``cancelled`` before any worker claims them; the ids it cancelled.

        A running job is not interrupted: its worker has spent money on it already.
        """
        async with self.engine.begin() as connection:
            changed = (await connection.execute(
                update(GeneratedImage)
                .where(GeneratedImage.id.in_(list(image_ids)), GeneratedImage.status == Status.QUEUED)
                .values(status=Status.FAILED, error_code="cancelled", error_message="cancelled before it started",
                        finished_at=utcnow(), updated_at=utcnow())
                .returning(GeneratedImage.id, GeneratedImage.batch_id)
                .execution_options(synchronize_session=False))).all()
            await self._changed(connection, changed, Status.FAILED)
        return sorted(image_id for image_id, _ in changed)

    # Working -------------------------------------------------------------------------------

    async def claim(self, *, owner: str, limit: int, lease_seconds: float,
                    batch_id: int | None = None) -> list[ClaimedJob]:
        """Claim up to ``limit`` jobs (oldest first) in one statement; [] when none are ready."""
        if limit <= 0:
            return []
        token = uuid.uuid4().hex  # the same on every try, so a repeat can find what the first took
        return await retrying(lambda attempt: self._claim(token, attempt, owner, limit, lease_seconds, batch_id))

    async def _claim(self, token: str, attempt: int, owner: str, limit: int, lease_seconds: float,
                     batch_id: int | None) -> list[ClaimedJob]:
        now = utcnow()
        candidates = select(GeneratedImage.id).where(claimable(now)).order_by(GeneratedImage.id).limit(limit)
        if batch_id is not None:
            candidates = candidates.where(GeneratedImage.batch_id == batch_id)
        if self.engine.dialect.name == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
        statement = (
            update(GeneratedImage)
            .where(GeneratedImage.id.in_(candidates.scalar_subquery()))
            .values(status=Status.RUNNING, lease_owner=owner, lease_token=token,
                    lease_expires_at=now + timedelta(seconds=lease_seconds),
                    attempts=GeneratedImage.attempts + 1, started_at=now, updated_at=now)
            .returning(GeneratedImage.id, GeneratedImage.attempts, GeneratedImage.batch_id)
            .execution_options(synchronize_session=False)
        )
        async with self.engine.begin() as connection:
            rows: Sequence[Any] = ()
            if attempt > 1:  # the first try may have committed unseen: then these jobs are ours already
                rows = (await connection.execute(select(GeneratedImage.id, GeneratedImage.attempts,
                                                        GeneratedImage.batch_id)
                                                 .where(GeneratedImage.lease_token == token))).all()
            if not rows:
                rows = (await connection.execute(statement)).all()
                await self._changed(connection, [(image_id, batch) for image_id, _, batch in rows], Status.RUNNING)
        return sorted((ClaimedJob(image_id, token, attempts) for image_id, attempts, _ in rows),
                      key=lambda job: job.image_id)

    @reconnecting
    async def unfinished(self, batch_id: int) -> bool:
        """Whether any job of the batch is still queued or running."""
        async with self.engine.connect() as connection:
            left = await connection.scalar(select(GeneratedImage.id).where(
                GeneratedImage.batch_id == batch_id,
                GeneratedImage.status.in_([Status.QUEUED, Status.RUNNING])).limit(1))
        return left is not None

    @reconnecting
    async def job_context(self, job: ClaimedJob) -> JobContext:
        async with self.sessions() as session:
            image = await session.get(GeneratedImage, job.image_id)
            prompt = await session.get(ImagePromptRow, image.prompt_id) if image else None
            post = await session.get(BlogPost, image.post_id) if image else None
            if image is None or prompt is None or post is None:  # deleted while it waited
                raise JobGoneError(f"claimed image {job.image_id} no longer exists")
            return JobContext(job.image_id, prompt, post, dict(image.options or {}), image.variation)

    @reconnecting
    async def heartbeat(self, jobs: Iterable[ClaimedJob], lease_seconds: float) -> set[int]:
        """Extend the leases of ``jobs``; return the ids still held (a lost one is missing)."""
        held: set[int] = set()
        expires = utcnow() + timedelta(seconds=lease_seconds)
        async with self.engine.begin() as connection:
            for job in jobs:
                result = await connection.execute(fenced(job).values(lease_expires_at=expires, updated_at=utcnow()))
                if result.rowcount:
                    held.add(job.image_id)
        return held

    async def complete(self, job: ClaimedJob, image: FinishedImage) -> bool:
        """Mark the job succeeded with its files and variants, in one transaction.

        Returns False (and changes nothing) when the lease was lost; the files already stored are
        content-addressed, so the worker that does hold the job will write the very same keys.
        """
        return await retrying(lambda attempt: self._complete(job, image, attempt))

    async def _complete(self, job: ClaimedJob, image: FinishedImage, attempt: int) -> bool:
        values = {name: getattr(image, name) for name in _FINISHED_COLUMNS}
        async with self.sessions.begin() as session:
            changed = (await session.execute(
                fenced(job).values(status=Status.SUCCEEDED, error_code=None, error_message=None,
                                   **NO_LEASE, finished_at=utcnow(), **values)
                .returning(GeneratedImage.id, GeneratedImage.batch_id))).all()
            if not changed:
                return attempt > 1 and await ended_as(session, job, Status.SUCCEEDED, storage_key=image.storage_key)
            await self._changed(session, changed, Status.SUCCEEDED)
            session.add_all(ImageVariant(image_id=job.image_id, format=variant.format, width=variant.width,
                                         height=variant.height, bytes=variant.bytes, storage_key=variant.storage_key)
                            for variant in image.variants)
        return True

    async def fail(self, job: ClaimedJob, code: str, message: str) -> bool:
        """Mark the job failed for good with ``code`` (an outcome class or a pipeline code)."""
        return await retrying(lambda attempt: self._fail(job, code, message[:2000], attempt))

    async def _fail(self, job: ClaimedJob, code: str, message: str, attempt: int) -> bool:
        async with self.sessions.begin() as session:
            changed = (await session.execute(
                fenced(job).values(status=Status.FAILED, error_code=code, error_message=message,
                                   **NO_LEASE, finished_at=utcnow())
                .returning(GeneratedImage.id, GeneratedImage.batch_id))).all()
            if not changed:
                return attempt > 1 and await ended_as(session, job, Status.FAILED, error_code=code)
            await self._changed(session, changed, Status.FAILED)
        return True

    @reconnecting
    async def release(self, job: ClaimedJob, *, counts: bool = True) -> bool:
        """Give a held job back to the queue untouched (a worker shutting down); fenced like the rest.

        ``counts=False`` takes back the claim's attempt: the job is given back for a reason that
        is not its own (the database connection was lost), so it must not near ``max_attempts``.
        """
        uncounted = {} if counts else {"attempts": GeneratedImage.attempts - 1}
        async with self.engine.begin() as connection:
            changed = (await connection.execute(
                fenced(job).values(status=Status.QUEUED, **NO_LEASE, **uncounted, updated_at=utcnow())
                .returning(GeneratedImage.id, GeneratedImage.batch_id))).all()
            await self._changed(connection, changed, Status.QUEUED)
        return bool(changed)

    # Housekeeping --------------------------------------------------------------------------

    @reconnecting
    async def fail_exhausted(self, max_attempts: int) -> int:
        """Fail claimable jobs that have already been claimed ``max_attempts`` times (crash loops)."""
        now = utcnow()
        async with self.engine.begin() as connection:
            changed = (await connection.execute(
                update(GeneratedImage)
                .where(GeneratedImage.attempts >= max_attempts, claimable(now))
                .values(status=Status.FAILED, error_code="max_attempts",
                        error_message=f"claimed {max_attempts} times without finishing",
                        **NO_LEASE, finished_at=now)
                .returning(GeneratedImage.id, GeneratedImage.batch_id)
                .execution_options(synchronize_session=False))).all()
            await self._changed(connection, changed, Status.FAILED)
        return len(changed)

    @reconnecting
    async def expire_dead_local_leases(self, is_alive: Callable[[int], bool] | None = None) -> int:
        """Expire leases held by processes on this host that no longer exist (see leases.py)."""
        return await expire_dead_local(self.engine, is_alive)

    # The one hook for "a job changed state" --------------------------------------------------

    async def _changed(self, session: AsyncSession | AsyncConnection, changed: ChangedRows, status: Status) -> None:
        """Report changes in the transaction that made them: one ImageEvent per changed job."""
        if changed:
            now = utcnow()
            await session.execute(insert(ImageEvent), [
                {"image_id": image_id, "batch_id": batch_id, "status": status, "created_at": now}
                for image_id, batch_id in changed
            ])


_FINISHED_COLUMNS = tuple(name for name in FinishedImage.__dataclass_fields__ if name != "variants")


def _reset_for_retry(image: GeneratedImage, options: dict[str, Any] | None) -> None:
    # Asking again is a fresh chance: back to the queue with a clean slate.
    image.status, image.error_code, image.error_message = Status.QUEUED, None, None
    image.attempts, image.options = 0, options
