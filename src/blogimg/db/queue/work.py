"""Working: claim, heartbeat, complete, fail and release jobs under fenced leases; housekeeping."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from blogimg.db.failures import reconnecting, retrying
from blogimg.db.jobs import (
    ClaimedJob,
    JobContext,
)
from blogimg.db.leases import NO_LEASE, claimable, ended_as, expire_dead_local, fenced
from blogimg.db.queue.changes import QueueBase
from blogimg.db.tables import (
    BlogPost,
    GeneratedImage,
    ImagePromptRow,
    ImageVariant,
    utcnow,
)
from blogimg.domain import FinishedImage, Status
from blogimg.errors import JobGoneError

_FINISHED_COLUMNS = tuple(name for name in FinishedImage.__dataclass_fields__ if name != "variants")


class Working(QueueBase):
    """The worker's side of the queue: every change names the lease token it holds."""

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
            return JobContext(job.image_id, prompt, post, dict(image.options or {}), image.variation,
                              image.batch_id)

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
                                         height=variant.height, bytes=variant.bytes, storage_key=variant.storage_key,
                                         quality=variant.quality, score=variant.score, encoder=variant.encoder)
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

