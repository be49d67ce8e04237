"""The job queue: rows of ``generated_images``. Every state change of a job lives here.

A worker *claims* jobs with one atomic UPDATE … RETURNING, taking queued rows and running rows
whose lease has expired, and stamps them with a fresh lease token. Every later change
(heartbeat, completion, failure) names that token in its WHERE clause, so a worker
that lost its lease — paused, partitioned, presumed dead — changes nothing when it wakes up.
On PostgreSQL the candidate rows are picked with FOR UPDATE SKIP LOCKED so workers never wait
on each other; on SQLite the statement runs under BEGIN IMMEDIATE, which serialises writers.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from blogimg.db.tables import GeneratedImage, ImageEvent, ImageVariant, utcnow
from blogimg.domain import Status


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job this worker holds, and the token that proves it."""

    image_id: int
    lease_token: str
    attempts: int  #: claims of this job so far, this one included


def local_prefix() -> str:
    """This host and PID namespace: two containers may share a host name but not their PIDs.

    Only owners with the same prefix can be judged dead by their PID; anything else waits for
    its lease to expire.
    """
    try:
        namespace = os.readlink("/proc/self/ns/pid").removeprefix("pid:").strip("[]")
    except OSError:  # not Linux: the host name alone
        namespace = ""
    host = socket.gethostname().replace(":", "-")
    return f"{host}~{namespace}" if namespace else host


def lease_owner_name() -> str:
    """``host~pidns:pid``: lets a worker in the same PID namespace see that an owner is gone."""
    return f"{local_prefix()}:{os.getpid()}"


async def claim_next_jobs(
    engine: AsyncEngine,
    *,
    owner: str,
    limit: int,
    lease_seconds: float,
    batch_id: int | None = None,
) -> list[ClaimedJob]:
    """Claim up to ``limit`` jobs (oldest first) in one statement; [] when none are ready."""
    if limit <= 0:
        return []
    now = utcnow()
    token = uuid.uuid4().hex
    claimable = or_(
        GeneratedImage.status == Status.QUEUED,
        and_(GeneratedImage.status == Status.RUNNING, GeneratedImage.lease_expires_at < now),
    )
    candidates = select(GeneratedImage.id).where(claimable).order_by(GeneratedImage.id).limit(limit)
    if batch_id is not None:
        candidates = candidates.where(GeneratedImage.batch_id == batch_id)
    if engine.dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    statement = (
        update(GeneratedImage)
        .where(GeneratedImage.id.in_(candidates.scalar_subquery()))
        .values(
            status=Status.RUNNING,
            lease_owner=owner,
            lease_token=token,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            attempts=GeneratedImage.attempts + 1,
            started_at=now,
            updated_at=now,
        )
        .returning(GeneratedImage.id, GeneratedImage.attempts, GeneratedImage.batch_id)
        .execution_options(synchronize_session=False)
    )
    async with engine.begin() as connection:
        rows = (await connection.execute(statement)).all()
        await record_events(connection, [(row.id, row.batch_id) for row in rows], Status.RUNNING)
    return sorted((ClaimedJob(row.id, token, row.attempts) for row in rows), key=lambda job: job.image_id)


async def heartbeat(engine: AsyncEngine, jobs: Iterable[ClaimedJob], lease_seconds: float) -> set[int]:
    """Extend the leases of ``jobs``; return the ids still held (a lost one is missing)."""
    held: set[int] = set()
    expires = utcnow() + timedelta(seconds=lease_seconds)
    async with engine.begin() as connection:
        for job in jobs:
            result = await connection.execute(
                _fenced(job).values(lease_expires_at=expires, updated_at=utcnow())
            )
            if result.rowcount:
                held.add(job.image_id)
    return held


async def complete_job(
    session: AsyncSession, job: ClaimedJob, values: dict, variants: Sequence[dict]
) -> bool:
    """Mark the job succeeded and add its variants, in the caller's transaction.

    Returns False (and changes nothing) when the lease was lost; the files already stored are
    content-addressed, so the worker that does hold the job will write the very same keys.
    """
    changed = (await session.execute(
        _fenced(job).values(
            status=Status.SUCCEEDED, error_code=None, error_message=None, lease_owner=None,
            lease_token=None, lease_expires_at=None, finished_at=utcnow(), **values,
        ).returning(GeneratedImage.id, GeneratedImage.batch_id)
    )).all()
    if not changed:
        return False
    await record_events(session, changed, Status.SUCCEEDED)
    for variant in variants:
        session.add(ImageVariant(image_id=job.image_id, **variant))
    return True


async def fail_job(engine: AsyncEngine, job: ClaimedJob, code: str, message: str) -> bool:
    """Mark the job failed for good with ``code`` (an outcome class or a pipeline code)."""
    async with engine.begin() as connection:
        changed = (await connection.execute(
            _fenced(job).values(
                status=Status.FAILED, error_code=code, error_message=message[:2000],
                lease_owner=None, lease_token=None, lease_expires_at=None, finished_at=utcnow(),
            ).returning(GeneratedImage.id, GeneratedImage.batch_id)
        )).all()
        await record_events(connection, changed, Status.FAILED)
    return bool(changed)


async def release_job(engine: AsyncEngine, job: ClaimedJob) -> bool:
    """Give a held job back to the queue untouched (a worker shutting down); fenced like the rest."""
    async with engine.begin() as connection:
        changed = (await connection.execute(
            _fenced(job).values(status=Status.QUEUED, lease_owner=None, lease_token=None,
                                lease_expires_at=None, updated_at=utcnow())
            .returning(GeneratedImage.id, GeneratedImage.batch_id)
        )).all()
        await record_events(connection, changed, Status.QUEUED)
    return bool(changed)


async def fail_exhausted_jobs(engine: AsyncEngine, max_attempts: int) -> int:
    """Fail claimable jobs that have already been claimed ``max_attempts`` times (crash loops)."""
    now = utcnow()
    async with engine.begin() as connection:
        changed = (await connection.execute(
            update(GeneratedImage)
            .where(
                GeneratedImage.attempts >= max_attempts,
                or_(
                    GeneratedImage.status == Status.QUEUED,
                    and_(GeneratedImage.status == Status.RUNNING, GeneratedImage.lease_expires_at < now),
                ),
            )
            .values(
                status=Status.FAILED, error_code="max_attempts",
                error_message=f"claimed {max_attempts} times without finishing",
                lease_owner=None, lease_token=None, lease_expires_at=None, finished_at=now,
            )
            .returning(GeneratedImage.id, GeneratedImage.batch_id)
            .execution_options(synchronize_session=False)
        )).all()
        await record_events(connection, changed, Status.FAILED)
    return len(changed)


async def expire_dead_local_leases(
    engine: AsyncEngine, is_alive: Callable[[int], bool] | None = None
) -> int:
    """Expire leases held by processes on this host that no longer exist.

    A ``generate`` that was killed holds its leases until they time out; the same host can tell
    for certain the owner is gone, so a re-run need not wait out the lease.
    """
    prefix = local_prefix()
    alive = is_alive or _process_alive
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                select(GeneratedImage.id, GeneratedImage.lease_owner, GeneratedImage.lease_token).where(
                    GeneratedImage.status == Status.RUNNING,
                    GeneratedImage.lease_owner.like(f"{prefix}:%"),
                )
            )
        ).all()
    dead = []
    for row in rows:
        pid = row.lease_owner.rsplit(":", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not alive(int(pid)):
            dead.append(ClaimedJob(row.id, row.lease_token, 0))
    if dead:
        async with engine.begin() as connection:
            for job in dead:
                await connection.execute(_fenced(job).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    return len(dead)


async def record_events(connection: AsyncConnection | AsyncSession, changed: Sequence, status: str) -> None:
    """One ImageEvent per changed (image id, batch id), in the caller's transaction."""
    if changed:
        now = utcnow()
        await connection.execute(insert(ImageEvent), [
            {"image_id": image_id, "batch_id": batch_id, "status": str(status), "created_at": now}
            for image_id, batch_id in changed
        ])


def _fenced(job: ClaimedJob):
    return (
        update(GeneratedImage)
        .where(
            GeneratedImage.id == job.image_id,
            GeneratedImage.lease_token == job.lease_token,
            GeneratedImage.status == Status.RUNNING,
        )
        .execution_options(synchronize_session=False)
    )


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
