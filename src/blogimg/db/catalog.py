"""The catalogue of images: read, edit, delete and search images with their variants; events.

Job state is the queue's (db/queue.py) and summaries are reporting's (db/reporting.py); handlers
and commands call these and nothing else touches the tables.
"""

from __future__ import annotations

import base64
import binascii
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypedDict

from sqlalchemy import ColumnElement, Row, delete, func, or_, select, tuple_, union_all
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from blogimg.db.tables import (
    BlogPost,
    GeneratedImage,
    GenerationAttempt,
    ImageEvent,
    ImagePromptRow,
    ImageVariant,
    utcnow,
)
from blogimg.db.text_search import TextIndex
from blogimg.domain import PromptKind, Status
from blogimg.errors import InputError


@dataclass(frozen=True, slots=True)
class ImageWithVariants:
    image: GeneratedImage
    prompt: str
    variants: list[ImageVariant]
    kind: PromptKind  #: the prompt's, so a page knows where in the post the image goes
    position: int  #: the prompt's place in its post


class ImageEdit(TypedDict, total=False):
    """The fields ``PUT /api/images/{id}`` may change; a field left out stays as it is."""

    alt_text: str | None
    rating: int | None
    tags: list[str]
    focal_x: float | None
    focal_y: float | None


@dataclass(frozen=True, slots=True)
class Page:
    items: list[ImageWithVariants]
    next_cursor: str | None


def encode_cursor(created_at: datetime, image_id: int) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{image_id}".encode()).decode().rstrip("=")


#: The largest id a row can have: ids are INTEGER columns, 32-bit on PostgreSQL. A larger number
#: names nothing, and sent to the database it fails (OverflowError on SQLite past 2**63, "out of
#: range" on PostgreSQL), so it is refused as input instead.
LARGEST_ID = 2**31 - 1


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The (created_at, id) a page ended at; InputError for anything :func:`encode_cursor` never makes."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, row_id = raw.partition("|")
        moment = datetime.fromisoformat(stamp)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InputError("cursor is not one this API issued") from None
    # Plain digits only (int() would take "+7", " 7" and "1_0"), and within the ids rows have:
    # the cursor is the client's to send back, so it is checked like any other input.
    if not (row_id.isascii() and row_id.isdigit() and len(row_id) <= 10 and 1 <= int(row_id) <= LARGEST_ID):
        raise InputError(f"cursor is not one this API issued (its id must be 1 to {LARGEST_ID})")
    if moment.tzinfo is not None:  # the catalogue's times, and so its cursors, are naive UTC
        raise InputError("cursor is not one this API issued (its time has a UTC offset)")
    return moment, int(row_id)


def _escape_like(text: str) -> str:
    """Match ``text`` literally in LIKE: its own %, _ and \\ are not wildcards."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _joined(image: GeneratedImage, prompt: Row[int, str, str, int] | None,
            variants: list[ImageVariant]) -> ImageWithVariants:
    # The prompt row is a foreign key and always there; the fallback only keeps a read from failing.
    if prompt is None:
        return ImageWithVariants(image, "", variants, kind=PromptKind.INLINE, position=0)
    return ImageWithVariants(image, prompt.prompt, variants, kind=PromptKind(prompt.kind), position=prompt.position)


class Catalog:
    """Images, their variants and their events."""

    def __init__(self, engine: AsyncEngine, sessions: async_sessionmaker) -> None:
        self.engine, self.sessions = engine, sessions
        self.text_index = TextIndex(engine)

    async def _with_variants(self, session: AsyncSession, images: Sequence[GeneratedImage]) -> list[ImageWithVariants]:
        if not images:
            return []
        ids = [image.id for image in images]
        variants: dict[int, list[ImageVariant]] = defaultdict(list)
        for variant in await session.scalars(
                select(ImageVariant).where(ImageVariant.image_id.in_(ids))
                .order_by(ImageVariant.format, ImageVariant.width)):
            variants[variant.image_id].append(variant)
        prompts = {row.id: row for row in (await session.execute(
            select(ImagePromptRow.id, ImagePromptRow.prompt, ImagePromptRow.kind, ImagePromptRow.position)
            .where(ImagePromptRow.id.in_({image.prompt_id for image in images})))).all()}
        return [_joined(image, prompts.get(image.prompt_id), variants[image.id]) for image in images]

    async def image(self, image_id: int) -> ImageWithVariants | None:
        async with self.sessions() as session:
            image = await session.get(GeneratedImage, image_id)
            return (await self._with_variants(session, [image]))[0] if image else None

    async def images_of_post(self, post_id: int) -> list[ImageWithVariants] | None:
        """Every image of one post, oldest first; None when there is no such post."""
        return await self._images_of(BlogPost, GeneratedImage.post_id, post_id)

    async def images_of_prompt(self, prompt_id: int) -> list[ImageWithVariants] | None:
        """Every image (variation) of one prompt, oldest first; None when there is no such prompt."""
        return await self._images_of(ImagePromptRow, GeneratedImage.prompt_id, prompt_id)

    async def _images_of(self, owner: type[BlogPost] | type[ImagePromptRow], column: InstrumentedAttribute[int],
                         owner_id: int) -> list[ImageWithVariants] | None:
        async with self.sessions() as session:
            if await session.get(owner, owner_id) is None:
                return None
            images = list(await session.scalars(
                select(GeneratedImage).where(column == owner_id).order_by(GeneratedImage.id)))
            return await self._with_variants(session, images)

    async def update_image(self, image_id: int, edit: ImageEdit) -> ImageWithVariants | None:
        """Change what people curate (alt text, rating, tags, focal point); never the job's state."""
        async with self.sessions.begin() as session:
            image = await session.get(GeneratedImage, image_id)
            if image is None:
                return None
            for name, value in edit.items():
                setattr(image, name, value)
            image.updated_at = utcnow()
        return await self.image(image_id)

    async def delete_image(self, image_id: int) -> list[str] | None:
        """Delete the row (variants and ledger rows go with it); return the keys no row still uses.

        Keys are content hashes, so two images with identical bytes share files: those stay.
        """
        async with self.sessions.begin() as session:
            image = await session.get(GeneratedImage, image_id)
            if image is None:
                return None
            keys = {key for key in (image.storage_key, image.thumbnail_key, image.original_key) if key}
            keys |= set(await session.scalars(select(ImageVariant.storage_key).where(ImageVariant.image_id == image_id)))
            await session.execute(delete(ImageVariant).where(ImageVariant.image_id == image_id))
            await session.execute(delete(GenerationAttempt).where(GenerationAttempt.image_id == image_id))
            await session.delete(image)
            await session.flush()
            still_used = await self._referenced(session, keys)
            return sorted(keys - still_used)

    async def _referenced(self, session: AsyncSession, keys: set[str]) -> set[str]:
        if not keys:
            return set()
        used = union_all(
            select(GeneratedImage.storage_key.label("key")).where(GeneratedImage.storage_key.in_(keys)),
            select(GeneratedImage.thumbnail_key).where(GeneratedImage.thumbnail_key.in_(keys)),
            select(GeneratedImage.original_key).where(GeneratedImage.original_key.in_(keys)),
            select(ImageVariant.storage_key).where(ImageVariant.storage_key.in_(keys)),
        ).subquery()
        return set((await session.scalars(select(used.c.key))).all())

    async def search(self, *, text: str | None, provider: str | None, status: Status | None, post_id: int | None,
                     created_from: datetime | None, created_to: datetime | None, cursor: str | None,
                     limit: int, kind: PromptKind | None = None) -> Page:
        """Newest first, by keyset (created_at, id): page 500,000 costs what page 1 does."""
        query = select(GeneratedImage)
        if kind is not None:  # the prompt's kind: one primary-key lookup per row the index walk reads
            query = query.join(ImagePromptRow, ImagePromptRow.id == GeneratedImage.prompt_id).where(
                ImagePromptRow.kind == kind)
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

    async def _text_filter(self, session: AsyncSession, phrase: str) -> ColumnElement[bool]:
        """Prompt or alt text contains ``phrase``: by id from the trigram index, or by scanning."""
        pattern = "%" + _escape_like(phrase) + "%"
        indexed = await self.text_index.condition(session, phrase, pattern)
        if indexed is not None:
            return indexed
        matching_prompts = select(ImagePromptRow.id).where(ImagePromptRow.prompt.ilike(pattern, escape="\\"))
        return or_(GeneratedImage.prompt_id.in_(matching_prompts), GeneratedImage.alt_text.ilike(pattern, escape="\\"))

    async def events_after(self, last_id: int, limit: int = 200, through: int | None = None) -> list[ImageEvent]:
        """Up to ``limit`` events after ``last_id`` (and up to ``through``, when given), in id order."""
        query = select(ImageEvent).where(ImageEvent.id > last_id)
        if through is not None:
            query = query.where(ImageEvent.id <= through)
        async with self.sessions() as session:
            return list(await session.scalars(query.order_by(ImageEvent.id).limit(limit)))

    async def settled_event_ids(self, settled_seconds: float, lookback: int = 1_000) -> tuple[int, int]:
        """(settled, newest): the newest event id, and the newest id written at least
        ``settled_seconds`` ago — on PostgreSQL a younger, lower id may still be uncommitted.

        Reads the newest ``lookback`` events backwards by id (no scan); when all of them are young,
        the oldest of them stands in for "settled".
        """
        async with self.sessions() as session:
            rows = (await session.execute(select(ImageEvent.id, ImageEvent.created_at)
                                          .order_by(ImageEvent.id.desc()).limit(lookback))).all()
        if not rows:
            return 0, 0
        before = utcnow() - timedelta(seconds=settled_seconds)
        settled = next((event_id for event_id, created in rows if created <= before),
                       rows[-1][0] - 1 if len(rows) < lookback else rows[-1][0])
        return settled, rows[0][0]

    async def latest_event_id(self) -> int:
        async with self.sessions() as session:
            return int(await session.scalar(select(func.coalesce(func.max(ImageEvent.id), 0))) or 0)

    async def referenced_keys(self) -> dict[str, int]:
        """Every storage key a row points at → the image it belongs to."""
        async with self.sessions() as session:
            pairs = (await session.execute(union_all(
                select(GeneratedImage.storage_key, GeneratedImage.id).where(GeneratedImage.storage_key.is_not(None)),
                select(GeneratedImage.thumbnail_key, GeneratedImage.id).where(GeneratedImage.thumbnail_key.is_not(None)),
                select(GeneratedImage.original_key, GeneratedImage.id).where(GeneratedImage.original_key.is_not(None)),
                select(ImageVariant.storage_key, ImageVariant.image_id),
            ))).all()
        return {key: image_id for key, image_id in pairs}

    # Files of images, for cleanup and repair (pipeline/cleanup.py, pipeline/repair.py) -------------

    async def image_files(self, image_ids: Sequence[int] | None = None) -> list[ImageFiles]:
        """The storage keys each image's rows point at (every image, or these), by id."""
        query = (select(GeneratedImage.id, GeneratedImage.status, GeneratedImage.sha256,
                        GeneratedImage.storage_key, GeneratedImage.thumbnail_key, GeneratedImage.original_key)
                 .order_by(GeneratedImage.id))
        variants = select(ImageVariant.image_id, ImageVariant.format, ImageVariant.width, ImageVariant.storage_key)
        if image_ids is not None:
            query = query.where(GeneratedImage.id.in_(list(image_ids)))
            variants = variants.where(ImageVariant.image_id.in_(list(image_ids)))
        async with self.sessions() as session:
            keyed: dict[int, dict[tuple[str, int], str]] = defaultdict(dict)
            for image_id, image_format, width, key in (await session.execute(variants)).all():
                keyed[image_id][(image_format, width)] = key
            return [ImageFiles(image_id, status, sha256, master, thumbnail, keyed.get(image_id, {}), original)
                    for image_id, status, sha256, master, thumbnail, original in (await session.execute(query)).all()]

    async def image_files_after(self, after_id: int, limit: int) -> list[ImageFiles]:
        """Up to ``limit`` images with ids above ``after_id``, in id order, with their keys: a whole
        library read a page at a time (pipeline/migrate_storage.py) instead of all at once."""
        async with self.sessions() as session:
            ids = list(await session.scalars(select(GeneratedImage.id).where(GeneratedImage.id > after_id)
                                             .order_by(GeneratedImage.id).limit(limit)))
        return await self.image_files(ids) if ids else []

    async def replace_file_keys(self, image_id: int, *, thumbnail: RemadeFile | None,
                                variants: Sequence[RemadeFile]) -> bool:
        """Point one succeeded image's rows at files made again from its master, all or nothing.

        Fenced on the keys the rows held: when any of them changed meanwhile (the image was made
        again, or deleted), nothing is written and the answer is False.
        """
        try:
            async with self.sessions.begin() as session:
                image = await session.get(GeneratedImage, image_id, with_for_update=True)
                if image is None or image.status != Status.SUCCEEDED or (
                        thumbnail is not None and image.thumbnail_key != thumbnail.old_key):
                    raise _KeysChanged
                if thumbnail is not None:
                    image.thumbnail_key = thumbnail.new_key
                for remade in variants:
                    row = await session.scalar(select(ImageVariant).where(
                        ImageVariant.image_id == image_id, ImageVariant.format == remade.format,
                        ImageVariant.width == remade.width, ImageVariant.storage_key == remade.old_key))
                    if row is None:
                        raise _KeysChanged  # leaving the block rolls every change back
                    row.storage_key, row.height, row.bytes = remade.new_key, remade.height, remade.bytes
                    row.quality, row.score, row.encoder = remade.quality, remade.score, remade.encoder
                image.updated_at = utcnow()
        except _KeysChanged:
            return False
        return True


@dataclass(frozen=True, slots=True)
class ImageFiles:
    """The keys one image's rows point at: its master, thumbnail and variants."""

    image_id: int
    status: Status
    sha256: str | None  #: the master's content hash, to tell a damaged master from a sound one
    master_key: str | None
    thumbnail_key: str | None
    variants: dict[tuple[str, int], str]  #: (format, width) → key
    #: the provider's C2PA-signed original, kept untouched (pipeline/provenance.py); never remade
    original_key: str | None = None

    def keys(self) -> set[str]:
        return {key for key in (self.master_key, self.thumbnail_key, self.original_key, *self.variants.values())
                if key}


@dataclass(frozen=True, slots=True)
class RemadeFile:
    """A file made again whose content-addressed key differs from the one its row held."""

    format: str
    width: int
    height: int
    bytes: int
    old_key: str
    new_key: str
    quality: int | None = None  #: how the new file was encoded (quality search); None where unknown
    score: float | None = None
    encoder: str | None = None


class _KeysChanged(Exception):
    """An image's rows no longer hold the keys a repair found missing."""
