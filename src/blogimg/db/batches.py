"""Batches requested through the API: explicit prompts or a post's own, idempotent by key.

Everything a request does — the batch row, new prompts, new jobs and their events — happens in
one transaction, so a repeated request (same Idempotency-Key) either finds the whole batch or
none of it. Two concurrent requests with one key race on the batch's unique key: the loser
waits for the winner's commit, then answers with the winner's batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from blogimg.db.queue import record_events
from blogimg.db.tables import Batch, BlogPost, GeneratedImage, ImagePromptRow
from blogimg.domain import Status
from blogimg.errors import ConflictError, NotFoundError

API_POST_SLUG = "api-prompts"  #: the post that holds prompts sent without a post


@dataclass(frozen=True, slots=True)
class PromptSpec:
    prompt: str
    kind: str = "inline"
    size: str = "1024x1024"


@dataclass(frozen=True, slots=True)
class BatchCreated:
    batch_id: int
    image_ids: list[int]
    created: bool  #: False when an earlier request with the same key made it


async def create_generation_batch(
    sessions: async_sessionmaker, *, idempotency_key: str | None, request_hash: str,
    post_id: int | None, prompts: Sequence[PromptSpec], variations: int, options: dict | None,
) -> BatchCreated:
    idempotency_key = idempotency_key or None  # an empty key is no key (and must not be stored as one)
    if idempotency_key:
        existing = await _existing(sessions, idempotency_key, request_hash)
        if existing:
            return existing
    try:
        async with sessions.begin() as session:
            batch = Batch(idempotency_key=idempotency_key, request_hash=request_hash)
            session.add(batch)
            await session.flush()  # the unique key: a concurrent twin stops here
            prompt_rows = await _prompt_rows(session, post_id, prompts)
            ids, queued = await _jobs(session, batch.id, prompt_rows, variations, options)
            batch.image_ids, batch.total = ids, len(queued)
            await session.flush()
            await record_events(session, [(image_id, batch.id) for image_id in queued], Status.QUEUED)
            return BatchCreated(batch.id, ids, True)
    except IntegrityError:
        if not idempotency_key:
            raise
        existing = await _existing(sessions, idempotency_key, request_hash)
        if existing is None:
            raise
        return existing


async def _existing(sessions: async_sessionmaker, key: str, request_hash: str) -> BatchCreated | None:
    async with sessions() as session:
        batch = await session.scalar(select(Batch).where(Batch.idempotency_key == key))
    if batch is None:
        return None
    if batch.request_hash != request_hash:
        raise ConflictError("this Idempotency-Key was used with a different request body")
    return BatchCreated(batch.id, list(batch.image_ids or []), False)


async def _prompt_rows(session: AsyncSession, post_id: int | None, prompts: Sequence[PromptSpec]) -> list[ImagePromptRow]:
    if post_id is not None:
        if await session.get(BlogPost, post_id) is None:
            raise NotFoundError(f"no post with id {post_id}")
        if not prompts:
            rows = list(await session.scalars(
                select(ImagePromptRow).where(ImagePromptRow.post_id == post_id).order_by(ImagePromptRow.position)))
            if not rows:
                raise NotFoundError(f"post {post_id} has no image prompts; send prompts explicitly")
            return rows
    else:
        post_id = await _api_post(session)
    rows = []
    for position, spec in enumerate(prompts):
        fingerprint = hashlib.sha256("\x1f".join(("api", spec.kind, spec.prompt, spec.size)).encode()).hexdigest()
        row = await session.scalar(select(ImagePromptRow).where(
            ImagePromptRow.post_id == post_id, ImagePromptRow.fingerprint == fingerprint))
        if row is None:
            row = ImagePromptRow(post_id=post_id, fingerprint=fingerprint, kind=spec.kind, position=1000 + position,
                                 prompt=spec.prompt, size=spec.size, alt_hint="", heading="")
            session.add(row)
            await session.flush()
        if row not in rows:  # the same prompt twice in one request is one prompt
            rows.append(row)
    return rows


async def _api_post(session: AsyncSession) -> int:
    post = await session.scalar(select(BlogPost).where(BlogPost.slug == API_POST_SLUG))
    if post is None:
        post = BlogPost(slug=API_POST_SLUG, title="Images requested through the API", markdown="", summary="")
        session.add(post)
        await session.flush()
    return post.id


async def _jobs(session: AsyncSession, batch_id: int, prompts: Sequence[ImagePromptRow], variations: int,
                options: dict | None) -> tuple[list[int], list[int]]:
    """One job per prompt and variation: new ones queued, failed ones re-queued, finished ones kept."""
    existing = {
        (image.prompt_id, image.variation): image
        for image in await session.scalars(select(GeneratedImage).where(
            GeneratedImage.prompt_id.in_([p.id for p in prompts]), GeneratedImage.variation < variations))
    }
    images, queued = [], []
    for prompt in prompts:
        for variation in range(variations):
            image = existing.get((prompt.id, variation))
            if image is None:
                image = GeneratedImage(prompt_id=prompt.id, post_id=prompt.post_id, variation=variation,
                                       status=Status.QUEUED, options=options)
                session.add(image)
                queued.append(image)
            elif image.status == Status.FAILED:
                image.status, image.error_code, image.error_message, image.attempts = Status.QUEUED, None, None, 0
                image.options = options
                queued.append(image)
            if image.status != Status.SUCCEEDED:
                image.batch_id = batch_id
            images.append(image)
    await session.flush()
    return [image.id for image in images], [image.id for image in queued]
