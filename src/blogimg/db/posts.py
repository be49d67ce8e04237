"""Posts and their prompts: saved from markdown or from the API, matched by slug and fingerprint.

These functions work inside a caller's session so that the job queue can save a post and
enqueue its images in one transaction; :class:`Posts` wraps them for callers that only save.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from blogimg.db.catalog import decode_cursor, encode_cursor
from blogimg.db.failures import retrying_conflicts
from blogimg.db.tables import BlogPost, GeneratedImage, ImagePromptRow
from blogimg.domain import ExtractedPost, PromptKind, Size, Status, fingerprint
from blogimg.errors import NotFoundError

API_POST_SLUG = "api-prompts"  #: the post that holds prompts sent without a post
API_PROMPT_POSITION = 1000  #: API prompts sort after a post's own


@dataclass(frozen=True, slots=True)
class PromptSpec:
    """A prompt sent through the API rather than read from a post."""

    prompt: str
    kind: PromptKind = PromptKind.INLINE
    size: Size = Size(1024, 1024)


async def save_post(session: AsyncSession, post: ExtractedPost) -> tuple[BlogPost, list[ImagePromptRow]]:
    """Upsert the post by slug and its prompts by fingerprint; the prompts in the post's order."""
    row = await session.scalar(select(BlogPost).where(BlogPost.slug == post.slug))
    if row is None:
        row = BlogPost(slug=post.slug)
        session.add(row)
    row.title, row.markdown, row.summary = post.title, post.markdown, post.summary
    row.tags, row.language, row.source_path = list(post.tags), post.language, post.source_path
    row.images_enabled = not post.opted_out
    await session.flush()
    existing = {
        prompt.fingerprint: prompt
        for prompt in await session.scalars(select(ImagePromptRow).where(ImagePromptRow.post_id == row.id))
    }
    prompts = []
    for prompt in post.prompts:
        prompt_row = existing.get(prompt.fingerprint)
        if prompt_row is None:
            prompt_row = ImagePromptRow(post_id=row.id, fingerprint=prompt.fingerprint)
            session.add(prompt_row)
        # Position and context may move as the post is edited; identity stays.
        prompt_row.kind, prompt_row.position, prompt_row.prompt = prompt.kind.value, prompt.position, prompt.prompt
        prompt_row.size, prompt_row.alt_hint, prompt_row.heading, prompt_row.line = (
            str(prompt.size), prompt.alt_hint, prompt.heading, prompt.line,
        )
        prompts.append(prompt_row)
    await session.flush()
    return row, prompts


async def prompts_of(session: AsyncSession, post_id: int) -> list[ImagePromptRow]:
    """Every prompt a post has, in its order."""
    return list(await session.scalars(
        select(ImagePromptRow).where(ImagePromptRow.post_id == post_id).order_by(ImagePromptRow.position)))


async def request_prompts(
    session: AsyncSession, post_id: int | None, specs: Sequence[PromptSpec]
) -> list[ImagePromptRow]:
    """The prompts an API request names: explicit ones (saved once), else the post's own."""
    if post_id is not None:
        if await session.get(BlogPost, post_id) is None:
            raise NotFoundError(f"no post with id {post_id}")
        if not specs:
            own = await prompts_of(session, post_id)
            if not own:
                raise NotFoundError(f"post {post_id} has no image prompts; send prompts explicitly")
            return own
    else:
        post_id = await _api_post(session)
    rows: list[ImagePromptRow] = []
    for position, spec in enumerate(specs):
        identity = fingerprint(spec.kind, spec.prompt, spec.size)
        row = await session.scalar(select(ImagePromptRow).where(
            ImagePromptRow.post_id == post_id, ImagePromptRow.fingerprint == identity))
        if row is None:
            row = ImagePromptRow(post_id=post_id, fingerprint=identity, kind=spec.kind.value,
                                 position=API_PROMPT_POSITION + position, prompt=spec.prompt,
                                 size=str(spec.size), alt_hint="", heading="")
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


@dataclass(frozen=True, slots=True)
class SavedPost:
    post_id: int
    prompts: tuple[ImagePromptRow, ...]  #: the post's current prompts, in its order


class Posts:
    """Saving posts without queueing anything (``POST /api/posts`` without ``enqueue``)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    @retrying_conflicts  # two clients saving one post at once: the loser finds the winner's rows
    async def save(self, post: ExtractedPost) -> SavedPost:
        async with self.sessions.begin() as session:
            row, prompts = await save_post(session, post)
            return SavedPost(row.id, tuple(prompts))

    async def prompts(self, post_id: int) -> list[ImagePromptRow]:
        """Every prompt a post has, in its order."""
        async with self.sessions() as session:
            return await prompts_of(session, post_id)

    async def page(self, *, slug: str | None, cursor: str | None, limit: int) -> PostPage:
        """Newest first, by keyset (created_at, id) like image search; ``slug`` finds one post."""
        query = select(BlogPost.id, BlogPost.slug, BlogPost.title, BlogPost.created_at, BlogPost.updated_at)
        if slug is not None:
            query = query.where(BlogPost.slug == slug)
        if cursor:
            stamp, last_id = decode_cursor(cursor)
            query = query.where(tuple_(BlogPost.created_at, BlogPost.id) < tuple_(stamp, last_id))
        # One row per post, so sorting without an index on created_at stays cheap.
        query = query.order_by(BlogPost.created_at.desc(), BlogPost.id.desc()).limit(limit + 1)
        async with self.sessions() as session:
            rows = (await session.execute(query)).all()
            more = len(rows) > limit
            rows = rows[:limit]
            ids = [row.id for row in rows]
            prompts = await _count_by_post(session, ImagePromptRow.post_id, ids)
            images = await _count_by_post(session, GeneratedImage.post_id, ids)
            succeeded = await _count_by_post(session, GeneratedImage.post_id, ids,
                                             GeneratedImage.status == Status.SUCCEEDED)
        items = [PostSummary(row.id, row.slug, row.title, row.created_at, row.updated_at, prompts.get(row.id, 0),
                             images.get(row.id, 0), succeeded.get(row.id, 0)) for row in rows]
        last = rows[-1] if more and rows else None
        return PostPage(items, encode_cursor(last.created_at, last.id) if last else None)


@dataclass(frozen=True, slots=True)
class PostSummary:
    """One post in a listing: what a page needs to show it, without its markdown."""

    id: int
    slug: str
    title: str
    created_at: datetime
    updated_at: datetime
    prompt_count: int
    image_count: int  #: every image, whatever its status (variations included)
    succeeded_count: int


@dataclass(frozen=True, slots=True)
class PostPage:
    items: list[PostSummary]
    next_cursor: str | None


async def _count_by_post(session: AsyncSession, column: InstrumentedAttribute[int], post_ids: list[int],
                         *conditions: ColumnElement[bool]) -> dict[int, int]:
    """Rows per post among ``post_ids``: one grouped query over the post_id index, not one per post."""
    if not post_ids:
        return {}
    rows = await session.execute(
        select(column, func.count()).where(column.in_(post_ids), *conditions).group_by(column))
    return {post_id: count for post_id, count in rows.all()}
