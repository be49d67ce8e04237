"""Batches in progress, for the status page: counts by status, recent throughput and an ETA.

Read over indexes only, never a scan of every image: the batches come from the rows that are
``queued`` or ``running`` (the ``(status, lease_expires_at)`` index: only unfinished rows are
read), and each one's counts and throughput from the ``(batch_id, status)`` index.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from blogimg.db.tables import Batch, GeneratedImage, utcnow
from blogimg.domain import Status

#: Throughput is measured over this much recent time: long enough to smooth a slow provider call,
#: short enough that an ETA follows a change of pace (a provider paused, a fallback taking over).
THROUGHPUT_WINDOW = timedelta(minutes=5)
_UNFINISHED = (Status.QUEUED, Status.RUNNING)
_FINISHED = (Status.SUCCEEDED, Status.FAILED)


@dataclass(frozen=True, slots=True)
class BatchStatus:
    """One unfinished batch: its images by status and when it should be done at the recent pace."""

    id: int
    created_at: datetime | None  #: None for images whose batch row is gone
    counts: dict[Status, int]
    finished_recently: int  #: images that finished within the throughput window
    window_seconds: float  #: how long that window really is (a young batch has a shorter one)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def finished(self) -> int:
        return self.counts[Status.SUCCEEDED] + self.counts[Status.FAILED]

    @property
    def remaining(self) -> int:
        return self.counts[Status.QUEUED] + self.counts[Status.RUNNING]

    @property
    def per_minute(self) -> float | None:
        """Images finished per minute lately; None before any has finished."""
        if not self.finished_recently or self.window_seconds <= 0:
            return None
        return self.finished_recently * 60.0 / self.window_seconds

    @property
    def eta_seconds(self) -> float | None:
        """Seconds until done at the recent pace; None when there is no pace to go by."""
        pace = self.per_minute
        return None if pace is None else self.remaining * 60.0 / pace


class BatchStatusReader:
    """The status page's view of the batches still at work."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def in_progress(self, limit: int = 10) -> list[BatchStatus]:
        """The newest ``limit`` batches with an image queued or running, newest first."""
        image = GeneratedImage
        now = utcnow()
        async with self.sessions() as session:
            batch_ids: list[int] = [batch_id for batch_id in await session.scalars(
                select(image.batch_id).where(image.status.in_(_UNFINISHED), image.batch_id.is_not(None))
                .group_by(image.batch_id).order_by(image.batch_id.desc()).limit(limit)) if batch_id is not None]
            if not batch_ids:
                return []
            counts: dict[int, dict[Status, int]] = defaultdict(lambda: {status: 0 for status in Status})
            for member, status, count in (await session.execute(
                    select(image.batch_id, image.status, func.count())
                    .where(image.batch_id.in_(batch_ids)).group_by(image.batch_id, image.status))).all():
                if member is not None:  # never None here (the query asks for these ids); mypy cannot tell
                    counts[member][status] = count
            created = dict((await session.execute(
                select(Batch.id, Batch.created_at).where(Batch.id.in_(batch_ids)))).all())
            since = now - THROUGHPUT_WINDOW
            recent = dict((await session.execute(
                select(image.batch_id, func.count())
                .where(image.batch_id.in_(batch_ids), image.status.in_(_FINISHED), image.finished_at >= since)
                .group_by(image.batch_id))).all())
        result = []
        for batch_id in batch_ids:
            began = created.get(batch_id)
            # A batch younger than the window has been at work only since it began.
            window = THROUGHPUT_WINDOW.total_seconds() if began is None else min(
                THROUGHPUT_WINDOW.total_seconds(), max(1.0, (now - began).total_seconds()))
            result.append(BatchStatus(batch_id, began, counts[batch_id], int(recent.get(batch_id, 0)), window))
        return result
