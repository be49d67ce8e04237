"""The queries behind the REST API: images with their variants, search pages, stats, batches.

Kept apart from db/repository.py (the pipeline's queries) so each stays small. Handlers call
these and nothing else touches the tables.
"""

from __future__ import annotations

import base64
import binascii
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, delete, func, or_, select, tuple_, union_all, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from blogimg.db.queue import record_events
from blogimg.db.tables import (
    Batch,
    BlogPost,
    GeneratedImage,
    GenerationAttempt,
    ImageEvent,
    ImagePromptRow,
    ImageVariant,
    utcnow,
)
from blogimg.db.text_search import TextIndex
from blogimg.domain import Status
from blogimg.errors import InputError


@dataclass(frozen=True, slots=True)
class ImageWithVariants:
    image: GeneratedImage
    prompt: str
    variants: list[ImageVariant]


@dataclass(frozen=True, slots=True)
class Page:
    items: list[ImageWithVariants]
    next_cursor: str | None


def encode_cursor(created_at: datetime, image_id: int) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{image_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, image_id = raw.partition("|")
        return datetime.fromisoformat(stamp), int(image_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InputError("cursor is not one this API issued") from None


def _escape_like(text: str) -> str:
    """Match ``text`` literally in LIKE: its own %, _ and \\ are not wildcards."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _percentile(values: Sequence[int], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))])


class Catalog:
    def __init__(self, engine: AsyncEngine, sessions: async_sessionmaker) -> None:
        self.engine, self.sessions = engine, sessions
        self.text_index = TextIndex(engine)

    async def _with_variants(self, session, images: Sequence[GeneratedImage]) -> list[ImageWithVariants]:  # type: ignore[no-untyped-def]
        if not images:
            return []
        ids = [image.id for image in images]
        variants: dict[int, list[ImageVariant]] = defaultdict(list)
        for variant in await session.scalars(
                select(ImageVariant).where(ImageVariant.image_id.in_(ids))
                .order_by(ImageVariant.format, ImageVariant.width)):
            variants[variant.image_id].append(variant)
        prompts = dict((await session.execute(
            select(ImagePromptRow.id, ImagePromptRow.prompt)
            .where(ImagePromptRow.id.in_({image.prompt_id for image in images})))).all())
        return [ImageWithVariants(image, prompts.get(image.prompt_id, ""), variants[image.id]) for image in images]

    async def image(self, image_id: int) -> ImageWithVariants | None:
        async with self.sessions() as session:
            image = await session.get(GeneratedImage, image_id)
            return (await self._with_variants(session, [image]))[0] if image else None

    async def images_of(self, owner: type[BlogPost] | type[ImagePromptRow], owner_id: int) -> list[ImageWithVariants] | None:
        """Every image of one post or one prompt, oldest first; None when there is no such owner."""
        column = GeneratedImage.post_id if owner is BlogPost else GeneratedImage.prompt_id
        async with self.sessions() as session:
            if await session.get(owner, owner_id) is None:
                return None
            images = list(await session.scalars(
                select(GeneratedImage).where(column == owner_id).order_by(GeneratedImage.id)))
            return await self._with_variants(session, images)

    async def update_image(self, image_id: int, values: dict) -> ImageWithVariants | None:
        async with self.sessions.begin() as session:
            result = await session.execute(
                update(GeneratedImage).where(GeneratedImage.id == image_id)
                .values(**values, updated_at=utcnow()).execution_options(synchronize_session=False))
            if not result.rowcount:
                return None
        return await self.image(image_id)

    async def delete_image(self, image_id: int) -> list[str] | None:
        """Delete the row (variants and ledger rows go with it); return the keys no row still uses.

        Keys are content hashes, so two images with identical bytes share files: those stay.
        """
        async with self.sessions.begin() as session:
            image = await session.get(GeneratedImage, image_id)
            if image is None:
                return None
            keys = {key for key in (image.storage_key, image.thumbnail_key) if key}
            keys |= set(await session.scalars(select(ImageVariant.storage_key).where(ImageVariant.image_id == image_id)))
            await session.execute(delete(ImageVariant).where(ImageVariant.image_id == image_id))
            await session.execute(delete(GenerationAttempt).where(GenerationAttempt.image_id == image_id))
            await session.delete(image)
            await session.flush()
            still_used = await self._referenced(session, keys)
            return sorted(keys - still_used)

    async def _referenced(self, session, keys: set[str]) -> set[str]:  # type: ignore[no-untyped-def]
        if not keys:
            return set()
        used = union_all(
            select(GeneratedImage.storage_key.label("key")).where(GeneratedImage.storage_key.in_(keys)),
            select(GeneratedImage.thumbnail_key).where(GeneratedImage.thumbnail_key.in_(keys)),
            select(ImageVariant.storage_key).where(ImageVariant.storage_key.in_(keys)),
        ).subquery()
        return set((await session.scalars(select(used.c.key))).all())

    async def retry(self, image_id: int) -> str | None:
        """Put a failed image back in the queue; return its status before, or None if unknown."""
        async with self.sessions.begin() as session:
            image = await session.get(GeneratedImage, image_id)
            if image is None:
                return None
            before = image.status
            if before == Status.FAILED:
                image.status, image.error_code, image.error_message, image.attempts = Status.QUEUED, None, None, 0
                await session.flush()
                await record_events(session, [(image.id, image.batch_id)], Status.QUEUED)
            return before

    async def search(self, *, text: str | None, provider: str | None, status: str | None, post_id: int | None,
                     created_from: datetime | None, created_to: datetime | None, cursor: str | None,
                     limit: int) -> Page:
        """Newest first, by keyset (created_at, id): page 500,000 costs what page 1 does."""
        query = select(GeneratedImage)
        for column, value in ((GeneratedImage.provider, provider), (GeneratedImage.status, status),
                              (GeneratedImage.post_id, post_id)):
            if value is not None:
                query = query.where(column == value)
        if created_from is not None:
            query = query.where(GeneratedImage.created_at >= created_from)
        if created_to is not None:
            query = query.where(GeneratedImage.created_at < created_to)
        if cursor:
            stamp, last_id = decode_cursor(cursor)
            # A row-value comparison, not "a < x OR (a = x AND b < y)": both engines turn the
            # former into one range scan of the (created_at, id) index; the OR form made page
            # 500,000 some 20× slower than page 1 (bench/database.py).
            query = query.where(tuple_(GeneratedImage.created_at, GeneratedImage.id) < tuple_(stamp, last_id))
        query = query.order_by(GeneratedImage.created_at.desc(), GeneratedImage.id.desc()).limit(limit + 1)
        async with self.sessions() as session:
            if text:
                query = query.where(await self._text_filter(session, text))
            images = list(await session.scalars(query))
            more = len(images) > limit
            images = images[:limit]
            items = await self._with_variants(session, images)
        last = images[-1] if more and images else None
        return Page(items, encode_cursor(last.created_at, last.id) if last else None)

    async def _text_filter(self, session, phrase: str):  # type: ignore[no-untyped-def]
        """Prompt or alt text contains ``phrase``: by id from the trigram index, or by scanning."""
        pattern = "%" + _escape_like(phrase) + "%"
        indexed = await self.text_index.condition(session, phrase, pattern)
        if indexed is not None:
            return indexed
        matching_prompts = select(ImagePromptRow.id).where(ImagePromptRow.prompt.ilike(pattern, escape="\\"))
        return or_(GeneratedImage.prompt_id.in_(matching_prompts), GeneratedImage.alt_text.ilike(pattern, escape="\\"))

    async def stats(self) -> list[dict]:
        """Per provider, model, status and day: counts, success rate, p50/p95 latency, cost, bytes."""
        # The UTC day as text, spelled per engine (SQLite has no DATE type to cast to).
        if self.engine.dialect.name == "sqlite":
            day = func.strftime("%Y-%m-%d", GeneratedImage.created_at)
        else:
            day = func.to_char(GeneratedImage.created_at, "YYYY-MM-DD")
        async with self.sessions() as session:
            rows = (await session.execute(
                select(GeneratedImage.provider, GeneratedImage.model, GeneratedImage.status, day,
                       func.count(), func.coalesce(func.sum(GeneratedImage.cost_usd), 0.0),
                       func.sum(case((GeneratedImage.cost_usd.is_(None) & (GeneratedImage.status == Status.SUCCEEDED), 1),
                                     else_=0)),
                       func.coalesce(func.sum(GeneratedImage.bytes_stored), 0))
                .group_by(GeneratedImage.provider, GeneratedImage.model, GeneratedImage.status, day)
                .order_by(day, GeneratedImage.provider, GeneratedImage.model, GeneratedImage.status))).all()
            latencies: dict[tuple, list[int]] = defaultdict(list)
            for provider, model, status, when, latency in (await session.execute(
                    select(GeneratedImage.provider, GeneratedImage.model, GeneratedImage.status, day,
                           GeneratedImage.latency_ms).where(GeneratedImage.latency_ms.is_not(None)))).all():
                latencies[(provider, model, status, str(when))].append(latency)
        totals: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
        for provider, model, status, when, count, *_ in rows:
            totals[(provider, model, str(when))][0] += count
            totals[(provider, model, str(when))][1] += count if status == Status.SUCCEEDED else 0
        result = []
        for provider, model, status, when, count, cost, unknown, stored in rows:
            finished, succeeded = totals[(provider, model, str(when))]
            values = latencies.get((provider, model, status, str(when)), [])
            result.append({
                "provider": provider, "model": model, "status": status, "day": str(when), "count": count,
                "success_rate": round(succeeded / finished, 4) if finished else None,
                "latency_p50_ms": _percentile(values, 0.5), "latency_p95_ms": _percentile(values, 0.95),
                "cost_usd": round(float(cost), 6), "unknown_cost_images": int(unknown or 0), "bytes_stored": int(stored),
            })
        return result

    async def batch(self, batch_id: int) -> dict | None:
        async with self.sessions() as session:
            batch = await session.get(Batch, batch_id)
            if batch is None:
                return None
            counts = {status.value: 0 for status in Status}
            counts.update(dict((await session.execute(
                select(GeneratedImage.status, func.count()).where(GeneratedImage.batch_id == batch_id)
                .group_by(GeneratedImage.status))).all()))
            cost = await session.scalar(
                select(func.coalesce(func.sum(GenerationAttempt.cost_usd), 0.0))
                .join(GeneratedImage, GeneratedImage.id == GenerationAttempt.image_id)
                .where(GeneratedImage.batch_id == batch_id, GenerationAttempt.started_at >= batch.created_at))
        done = counts[Status.QUEUED] == 0 and counts[Status.RUNNING] == 0
        return {"id": batch.id, "done": done, "counts": counts, "cost_usd": round(float(cost or 0), 6),
                "image_ids": list(batch.image_ids or [])}

    async def events_after(self, last_id: int, limit: int = 200) -> list[ImageEvent]:
        async with self.sessions() as session:
            return list(await session.scalars(
                select(ImageEvent).where(ImageEvent.id > last_id).order_by(ImageEvent.id).limit(limit)))

    async def latest_event_id(self) -> int:
        async with self.sessions() as session:
            return int(await session.scalar(select(func.coalesce(func.max(ImageEvent.id), 0))) or 0)

    async def referenced_keys(self) -> dict[str, int]:
        """Every storage key a row points at → the image it belongs to."""
        async with self.sessions() as session:
            pairs = (await session.execute(union_all(
                select(GeneratedImage.storage_key, GeneratedImage.id).where(GeneratedImage.storage_key.is_not(None)),
                select(GeneratedImage.thumbnail_key, GeneratedImage.id).where(GeneratedImage.thumbnail_key.is_not(None)),
                select(ImageVariant.storage_key, ImageVariant.image_id),
            ))).all()
        return {key: image_id for key, image_id in pairs}
