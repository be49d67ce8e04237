"""A page of posts with their images in order and what each post's images cost, for the status page.

Three grouped queries per page (images, prompts, ledger), each over an index on the page's post
ids, never one query per post.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from blogimg.db.tables import GeneratedImage, GenerationAttempt, ImagePromptRow
from blogimg.domain import Status


@dataclass(frozen=True, slots=True)
class PostImage:
    """What a post's row on the page shows of one image."""

    id: int
    status: Status
    kind: str
    position: int
    variation: int
    thumbnail_key: str | None
    lqip: str | None
    dominant_color: str | None
    alt_text: str | None
    prompt: str


@dataclass(frozen=True, slots=True)
class PostCost:
    """Dollars the calls for one post's images cost; calls of unknown price are counted, not added."""

    cost_usd: float
    unknown_cost_calls: int


class PostImagesReader:
    """Images and cost of a set of posts."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def images(self, post_ids: Sequence[int]) -> dict[int, list[PostImage]]:
        """Each post's images in the post's order (prompt position, then variation)."""
        if not post_ids:
            return {}
        image, prompt = GeneratedImage, ImagePromptRow
        async with self.sessions() as session:
            rows = (await session.execute(
                select(image.post_id, image.id, image.status, prompt.kind, prompt.position, image.variation,
                       image.thumbnail_key, image.lqip, image.dominant_color, image.alt_text, prompt.prompt)
                .join(prompt, prompt.id == image.prompt_id)
                .where(image.post_id.in_(list(post_ids)))
                .order_by(image.post_id, prompt.position, image.variation, image.id))).all()
        result: dict[int, list[PostImage]] = defaultdict(list)
        for post_id, *fields in rows:
            result[post_id].append(PostImage(*fields))
        return result

    async def costs(self, post_ids: Sequence[int]) -> dict[int, PostCost]:
        """Each post's spending from the ledger: every call for its images, failed ones included."""
        if not post_ids:
            return {}
        image, attempt = GeneratedImage, GenerationAttempt
        async with self.sessions() as session:
            rows = (await session.execute(
                select(image.post_id, func.coalesce(func.sum(attempt.cost_usd), 0.0),
                       func.sum(case((attempt.cost_usd.is_(None), 1), else_=0)))
                .join(image, image.id == attempt.image_id)
                .where(image.post_id.in_(list(post_ids))).group_by(image.post_id))).all()
        return {post_id: PostCost(round(float(cost or 0.0), 6), int(unknown or 0)) for post_id, cost, unknown in rows}
