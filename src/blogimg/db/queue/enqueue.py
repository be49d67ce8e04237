"""Enqueueing: posts, API prompts and failed images become queued jobs, one batch per call."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from blogimg.db import posts
from blogimg.db.batch_rows import existing_batch, name_images, new_batch
from blogimg.db.failures import reconnecting, retrying, retrying_conflicts
from blogimg.db.jobs import (
    BatchEnqueued,
    FailedToRetry,
    LostToRemake,
    PostsToEnqueue,
    PromptsToEnqueue,
    Work,
)
from blogimg.db.queue.changes import QueueBase, reset_for_retry
from blogimg.db.tables import (
    Batch,
    GeneratedImage,
    ImagePromptRow,
    ImageVariant,
    utcnow,
)
from blogimg.domain import ExtractedPost, Status


class Enqueueing(QueueBase):
    """Make batches of work: new jobs queued, failed ones re-queued, finished ones kept."""


    async def enqueue(self, work: Work) -> BatchEnqueued:
        """Make a batch of ``work``; new jobs queued, failed ones re-queued, finished ones kept."""
        if isinstance(work, PromptsToEnqueue):
            return await self._enqueue_request(work)
        if isinstance(work, LostToRemake):
            return await self.remake(work.lost)
        if isinstance(work, FailedToRetry) and work.idempotency_key:
            key = work.idempotency_key
            return await retrying(lambda _attempt: self._retry_failed_once(work, key))
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
                    reset_for_retry(image, options if replace_options else image.options)
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
            return await self._requeue_failed(session, image_ids, batch_id)

    async def _retry_failed_once(self, work: FailedToRetry, key: str) -> BatchEnqueued:
        # As a keyed API request: the batch row holding the key and the jobs it re-queues commit
        # together, so a repeat (or a twin racing on the key) finds the whole batch or none of it.
        try:
            async with self.sessions.begin() as session:
                batch = Batch(idempotency_key=key, request_hash=work.request_hash)
                session.add(batch)
                await session.flush()  # the unique key: a concurrent twin stops here
                image_ids = await self._requeue_failed(session, work.image_ids, batch.id)
                batch.image_ids = image_ids
                return BatchEnqueued(batch.id, tuple(image_ids), tuple(image_ids))
        except IntegrityError:
            existing = await existing_batch(self.sessions, key, work.request_hash)
            if existing is None:
                raise
            return existing

    async def _requeue_failed(self, session: AsyncSession, image_ids: Sequence[int] | None,
                              batch_id: int) -> list[int]:
        # The batch is new, so only a try that committed unseen can have put images in it
        # already: a repeat finds them there instead of finding no failed images left.
        # FOR UPDATE: two retries at once (bulk and bulk, or bulk and one) must not both reset an
        # image and write two QUEUED events. The second waits for the first's rows, and PostgreSQL
        # reads them again as committed, no longer failed; populate_existing makes the status read
        # below that fresh row, not one this session held already. SQLite serializes writers anyway.
        chosen = (select(GeneratedImage)
                  .where(or_(GeneratedImage.status == Status.FAILED, GeneratedImage.batch_id == batch_id))
                  .order_by(GeneratedImage.id)  # locks taken in one order: two retries cannot deadlock
                  .with_for_update()
                  .execution_options(populate_existing=True))
        if image_ids is not None:
            chosen = chosen.where(GeneratedImage.id.in_(list(image_ids)))
        images = list(await session.scalars(chosen))
        failed = [image for image in images if image.status == Status.FAILED]
        for image in failed:
            reset_for_retry(image, image.options)
            image.batch_id = batch_id
        await session.flush()
        await self._changed(session, [(image.id, batch_id) for image in failed], Status.QUEUED)
        return [image.id for image in images]

    async def requeue(self, image_id: int) -> Status | None:
        """Put one failed image back in the queue (in its batch); its status before, None if unknown."""
        async with self.sessions.begin() as session:
            # Locked, and read as committed after any retry that held it: see _requeue_failed.
            image = await session.get(GeneratedImage, image_id, with_for_update=True, populate_existing=True)
            if image is None:
                return None
            before = image.status
            if before == Status.FAILED:
                reset_for_retry(image, image.options)
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

