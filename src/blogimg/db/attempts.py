"""One image's timeline of provider calls, read from the cost ledger (``generation_attempts``).

The ledger is written by ``db/ledger.py``; this module only reads it, for the image view and
``GET /api/images/{id}/attempts``.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from blogimg.db.tables import GeneratedImage, GenerationAttempt

#: The most ledger rows one timeline shows: a job is claimed a few times with a few calls each,
#: so this is never reached by a real image, and a runaway one still answers in bounded time.
TIMELINE_LIMIT = 500


class AttemptHistory:
    """Reads of the ledger by image."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def timeline(self, image_id: int) -> list[GenerationAttempt] | None:
        """Every provider call made for the image, oldest first; None when there is no such image."""
        async with self.sessions() as session:
            if await session.get(GeneratedImage, image_id) is None:
                return None
            # The (image_id, attempt) index finds the rows; the id breaks ties between calls of one
            # claim (a fallback chain makes several calls under one attempt number).
            return list(await session.scalars(
                select(GenerationAttempt).where(GenerationAttempt.image_id == image_id)
                .order_by(GenerationAttempt.started_at, GenerationAttempt.id).limit(TIMELINE_LIMIT)))
