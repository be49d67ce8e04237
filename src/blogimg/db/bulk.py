"""The rows bulk actions read and write: failed images of a batch or a post, a post's images,
succeeded images a page at a time with their variants, new variant rows, and old events.

No status changes here: retries go through the queue (db/queue), deletes through the catalogue.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from blogimg.db.tables import Batch, BlogPost, GeneratedImage, ImageEvent, ImageVariant
from blogimg.domain import Status
from blogimg.errors import InputError, NotFoundError

#: Events deleted by one statement: SQLite's write lock is never held for long.
PRUNE_CHUNK = 5_000
_IDS_PER_QUERY = 10_000


@dataclass(frozen=True, slots=True)
class MadeImage:
    """A succeeded image's master and the variants its rows name."""

    image_id: int
    master_key: str
    sha256: str | None
    width: int
    height: int
    variants: frozenset[tuple[str, int]]  #: (format, width)


@dataclass(frozen=True, slots=True)
class NewVariant:
    """A variant file already stored, whose row is to be added."""

    format: str
    width: int
    height: int
    bytes: int
    storage_key: str
    quality: int | None = None  #: how it was encoded (quality search); None where unknown
    score: float | None = None
    encoder: str | None = None


class BulkRows:
    """Queries of the bulk actions, for one database."""

    def __init__(self, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.engine, self.sessions = engine, sessions

    async def failed_of_batch(self, batch_id: int) -> list[int]:
        """The failed images among those the batch names (its list, or its id on older batches)."""
        async with self.sessions() as session:
            batch = await session.get(Batch, batch_id)
            if batch is None:
                raise NotFoundError(f"no batch with id {batch_id}")
            if batch.image_ids is None:
                return list(await session.scalars(select(GeneratedImage.id).where(
                    GeneratedImage.batch_id == batch_id, GeneratedImage.status == Status.FAILED)
                    .order_by(GeneratedImage.id)))
            found: list[int] = []
            listed = list(batch.image_ids)
            for start in range(0, len(listed), _IDS_PER_QUERY):  # SQLite takes some 32,000 parameters
                found += await session.scalars(select(GeneratedImage.id).where(
                    GeneratedImage.id.in_(listed[start:start + _IDS_PER_QUERY]),
                    GeneratedImage.status == Status.FAILED))
            return sorted(found)

    async def images_of_post(self, post_id: int, status: Status | None = None) -> dict[int, Status]:
        """Image id → status of one post's images (only ``status`` ones when given)."""
        async with self.sessions() as session:
            if await session.get(BlogPost, post_id) is None:
                raise NotFoundError(f"no post with id {post_id}")
            query = select(GeneratedImage.id, GeneratedImage.status).where(GeneratedImage.post_id == post_id)
            if status is not None:
                query = query.where(GeneratedImage.status == status)
            return {image_id: status for image_id, status in await session.execute(query.order_by(GeneratedImage.id))}

    async def succeeded_count(self) -> int:
        async with self.sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(GeneratedImage)
                                            .where(GeneratedImage.status == Status.SUCCEEDED)) or 0)

    async def made_after(self, after_id: int, limit: int) -> list[MadeImage]:
        """Up to ``limit`` succeeded images with ids above ``after_id``, in id order: a page of them."""
        image = GeneratedImage
        async with self.sessions() as session:
            rows = (await session.execute(
                select(image.id, image.storage_key, image.sha256, image.width, image.height)
                .where(image.id > after_id, image.status == Status.SUCCEEDED, image.storage_key.is_not(None))
                .order_by(image.id).limit(limit))).all()
            variants: dict[int, set[tuple[str, int]]] = defaultdict(set)
            if rows:
                for image_id, image_format, width in (await session.execute(
                        select(ImageVariant.image_id, ImageVariant.format, ImageVariant.width)
                        .where(ImageVariant.image_id.in_([row[0] for row in rows])))).all():
                    variants[image_id].add((image_format, width))
        return [MadeImage(image_id, key or "", sha256, width or 0, height or 0, frozenset(variants[image_id]))
                for image_id, key, sha256, width, height in rows]

    async def add_variants(self, image_id: int, master_key: str, files: Sequence[NewVariant]) -> int:
        """Add rows for variant files already stored, fenced: only while the image is still succeeded
        from the very master they were made from. Pairs it has meanwhile are left as they are.
        How many rows were added (0 when the image changed: its files are orphans for cleanup)."""
        async with self.sessions.begin() as session:
            # The row lock makes a requeue, a remake or a delete of this image wait for this
            # transaction, or this one wait for theirs and then see what they did.
            image = await session.get(GeneratedImage, image_id, with_for_update=True, populate_existing=True)
            if image is None or image.status != Status.SUCCEEDED or image.storage_key != master_key:
                return 0
            have = {(image_format, width) for image_format, width in await session.execute(
                select(ImageVariant.format, ImageVariant.width).where(ImageVariant.image_id == image_id))}
            new = [file for file in files if (file.format, file.width) not in have]
            session.add_all(ImageVariant(image_id=image_id, format=file.format, width=file.width, height=file.height,
                                         bytes=file.bytes, storage_key=file.storage_key, quality=file.quality,
                                         score=file.score, encoder=file.encoder) for file in new)
            return len(new)

    async def prune_events(self, before: datetime, *, chunk: int = PRUNE_CHUNK) -> int:
        """Delete events written before ``before``, except the newest event of all; how many went.

        ``image_events`` has no index on its time, but ids grow with time: the last id to delete is
        found by bisecting ids with primary-key lookups, and rows go in id ranges of ``chunk``, each
        its own short transaction. A row is deleted only if its own time is before ``before`` too.
        """
        if chunk < 1:
            raise InputError("chunk must be at least 1")
        async with self.engine.connect() as connection:
            newest = await connection.scalar(select(func.max(ImageEvent.id)))
            oldest = await connection.scalar(select(func.min(ImageEvent.id)))
            if newest is None or oldest is None:
                return 0
            # The largest id whose event is older than ``before`` (ids and times rise together).
            boundary, low, high = oldest - 1, oldest, newest - 1  # the newest event always stays
            while low <= high:
                middle = (low + high) // 2
                at = (await connection.execute(select(ImageEvent.id, ImageEvent.created_at)
                                               .where(ImageEvent.id >= middle).order_by(ImageEvent.id).limit(1))).first()
                if at is not None and at[0] <= high and at[1] < before:
                    boundary, low = at[0], at[0] + 1
                else:
                    high = middle - 1
        deleted = 0
        for start in range(oldest, boundary + 1, chunk):
            async with self.engine.begin() as connection:
                result = await connection.execute(delete(ImageEvent).where(
                    ImageEvent.id >= start, ImageEvent.id <= min(boundary, start + chunk - 1),
                    ImageEvent.created_at < before))
                deleted += result.rowcount or 0
        return deleted
