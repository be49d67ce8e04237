"""Rows of ``batches`` that hold no job state: a new batch, the images it names, and the batch an
Idempotency-Key already made. The jobs themselves change only in ``db/queue.py``.

Each is a unit safe to repeat on a fresh connection (``db/failures.py``).
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from blogimg.db.failures import reconnecting
from blogimg.db.jobs import BatchEnqueued
from blogimg.db.tables import Batch
from blogimg.errors import ConflictError


@reconnecting  # a try that committed unseen leaves one empty batch row behind: harmless
async def new_batch(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions.begin() as session:
        batch = Batch()
        session.add(batch)
        await session.flush()
        return batch.id


@reconnecting
async def name_images(sessions: async_sessionmaker[AsyncSession], batch_id: int, image_ids: list[int]) -> None:
    async with sessions.begin() as session:
        await session.execute(update(Batch).where(Batch.id == batch_id).values(image_ids=image_ids))


@reconnecting
async def existing_batch(sessions: async_sessionmaker[AsyncSession], key: str,
                         request_hash: str | None) -> BatchEnqueued | None:
    """The batch ``key`` made before; ConflictError when it was made for another request."""
    async with sessions() as session:
        batch = await session.scalar(select(Batch).where(Batch.idempotency_key == key))
    if batch is None:
        return None
    if batch.request_hash != request_hash:
        raise ConflictError("this Idempotency-Key was used with a different request body")
    return BatchEnqueued(batch.id, tuple(batch.image_ids or ()), (), created=False)
