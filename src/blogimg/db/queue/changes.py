"""The base of the job queue: the one hook every change of status goes through, and the reset of a retry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from blogimg.db import webhooks
from blogimg.db.tables import (
    GeneratedImage,
    ImageEvent,
    utcnow,
)
from blogimg.domain import Status

ChangedRows = Sequence[tuple[int, int | None]]  #: (image id, batch id) of each job that changed


class QueueBase:
    """What every part of the queue shares: the engine, the sessions and the change hook."""

    def __init__(self, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.engine, self.sessions = engine, sessions

    # The one hook for "a job changed state" --------------------------------------------------

    async def _changed(self, session: AsyncSession | AsyncConnection, changed: ChangedRows, status: Status) -> None:
        """Report changes in the transaction that made them: one ImageEvent per changed job, and webhooks."""
        if changed:
            now = utcnow()
            await session.execute(insert(ImageEvent), [
                {"image_id": image_id, "batch_id": batch_id, "status": status, "created_at": now}
                for image_id, batch_id in changed
            ])
            await webhooks.image_changes(session, changed, status)  # the outbox: sent once this commits


def reset_for_retry(image: GeneratedImage, options: dict[str, Any] | None) -> None:
    # Asking again is a fresh chance: back to the queue with a clean slate.
    image.status, image.error_code, image.error_message = Status.QUEUED, None, None
    image.attempts, image.options = 0, options
