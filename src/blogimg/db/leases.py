"""Leases: who holds a job (owner names that let a worker on the same host see that an owner is
gone), which jobs may be claimed, and the fence — the lease token — every later change names.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Update, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from blogimg.db.jobs import ClaimedJob
from blogimg.db.tables import GeneratedImage, utcnow
from blogimg.domain import Status

NO_LEASE: dict[str, Any] = {"lease_owner": None, "lease_token": None, "lease_expires_at": None}


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


def process_alive(pid: int) -> bool:
    """True unless ``pid`` names no process (a process we may not signal is alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claimable(now: Any) -> ColumnElement[bool]:
    """Queued jobs, and running ones whose lease ran out (their worker is gone or stalled)."""
    return or_(GeneratedImage.status == Status.QUEUED,
               and_(GeneratedImage.status == Status.RUNNING, GeneratedImage.lease_expires_at < now))


def fenced(job: ClaimedJob) -> Update:
    """An UPDATE of ``job`` that changes nothing unless this worker still holds its lease."""
    return (
        update(GeneratedImage)
        .where(GeneratedImage.id == job.image_id, GeneratedImage.lease_token == job.lease_token,
               GeneratedImage.status == Status.RUNNING)
        .execution_options(synchronize_session=False)
    )


async def ended_as(session: AsyncSession, job: ClaimedJob, status: Status, **columns: Any) -> bool:
    """Whether a job this worker held ended as it was about to end it: a try that committed but
    whose answer was lost with the connection, seen when the fenced repeat changes nothing."""
    row = await session.scalar(select(GeneratedImage).where(GeneratedImage.id == job.image_id))
    return row is not None and row.status == status and row.lease_token is None \
        and all(getattr(row, name) == value for name, value in columns.items())


async def expire_dead_local(engine: AsyncEngine, is_alive: Callable[[int], bool] | None = None) -> int:
    """Expire leases held by processes on this host that no longer exist; how many.

    A ``generate`` that was killed holds its leases until they time out; the same host can
    tell for certain the owner is gone, so a re-run need not wait out the lease.
    """
    prefix = local_prefix()
    alive = is_alive or process_alive
    async with engine.connect() as connection:
        rows = (await connection.execute(
            select(GeneratedImage.id, GeneratedImage.lease_owner, GeneratedImage.lease_token).where(
                GeneratedImage.status == Status.RUNNING, GeneratedImage.lease_owner.like(f"{prefix}:%"))
        )).all()
    dead = []
    for image_id, owner, token in rows:
        pid = (owner or "").rsplit(":", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not alive(int(pid)) and token:
            dead.append(ClaimedJob(image_id, token, 0))
    if dead:
        async with engine.begin() as connection:
            for job in dead:
                await connection.execute(fenced(job).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    return len(dead)
