"""Every query blogimg makes outside the queue's state changes (see db/queue.py for those)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import case, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from blogimg.db.queue import record_events
from blogimg.db.tables import (
    Batch,
    BlogPost,
    GeneratedImage,
    GenerationAttempt,
    ImagePromptRow,
    utcnow,
)
from blogimg.domain import AttemptRecord, ExtractedPost, Status
from blogimg.pipeline.budget import PENDING, Budget


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    """What saving one post did to the queue."""

    post_id: int
    queued_image_ids: tuple[int, ...]  #: jobs now waiting in this batch
    already_done: int  #: prompts whose image already succeeded (no work)


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a worker needs to make one image."""

    image_id: int
    prompt: ImagePromptRow
    post: BlogPost
    options: dict  #: per-job choices from the API ({} = the worker's defaults)


class Repository:
    """Named queries over one database; handlers and the pipeline call these, nothing else."""

    def __init__(self, engine: AsyncEngine, sessions: async_sessionmaker) -> None:
        self.engine = engine
        self.sessions = sessions

    # Posts, prompts and enqueueing -------------------------------------------------------

    async def create_batch(self) -> int:
        async with self.sessions.begin() as session:
            batch = Batch()
            session.add(batch)
            await session.flush()
            return batch.id

    async def save_post_and_enqueue(self, post: ExtractedPost, batch_id: int) -> EnqueueResult:
        """Upsert the post and its prompts and enqueue every image not yet made, atomically.

        One transaction, so a crash leaves either the whole post queued or nothing; re-running
        finds prompts by fingerprint and images by prompt, so nothing is made twice.
        """
        async with self.sessions.begin() as session:
            row = await self._upsert_post(session, post)
            prompt_rows = await self._sync_prompts(session, row.id, post)
            queued, done = await self._enqueue(session, row.id, prompt_rows, batch_id)
            return EnqueueResult(row.id, tuple(queued), done)

    async def save_post(self, post: ExtractedPost) -> tuple[int, list[ImagePromptRow]]:
        """Upsert the post and its prompts without queueing anything."""
        async with self.sessions.begin() as session:
            row = await self._upsert_post(session, post)
            return row.id, await self._sync_prompts(session, row.id, post)

    async def _upsert_post(self, session: AsyncSession, post: ExtractedPost) -> BlogPost:
        row = await session.scalar(select(BlogPost).where(BlogPost.slug == post.slug))
        if row is None:
            row = BlogPost(slug=post.slug)
            session.add(row)
        row.title, row.markdown, row.summary = post.title, post.markdown, post.summary
        row.tags, row.language, row.source_path = list(post.tags), post.language, post.source_path
        row.images_enabled = not post.opted_out
        await session.flush()
        return row

    async def _sync_prompts(
        self, session: AsyncSession, post_id: int, post: ExtractedPost
    ) -> list[ImagePromptRow]:
        existing = {
            prompt.fingerprint: prompt
            for prompt in await session.scalars(
                select(ImagePromptRow).where(ImagePromptRow.post_id == post_id)
            )
        }
        rows = []
        for prompt in post.prompts:
            row = existing.get(prompt.fingerprint)
            if row is None:
                row = ImagePromptRow(post_id=post_id, fingerprint=prompt.fingerprint)
                session.add(row)
            # Position and context may move as the post is edited; identity stays.
            row.kind, row.position, row.prompt = prompt.kind.value, prompt.position, prompt.prompt
            row.size, row.alt_hint, row.heading, row.line = (
                str(prompt.size), prompt.alt_hint, prompt.heading, prompt.line,
            )
            rows.append(row)
        await session.flush()
        return rows

    async def _enqueue(
        self, session: AsyncSession, post_id: int, prompts: Sequence[ImagePromptRow], batch_id: int
    ) -> tuple[list[int], int]:
        if not prompts:
            return [], 0
        images = {
            image.prompt_id: image
            for image in await session.scalars(
                select(GeneratedImage).where(
                    GeneratedImage.prompt_id.in_([p.id for p in prompts]),
                    GeneratedImage.variation == 0,
                )
            )
        }
        queued: list[GeneratedImage] = []
        done = 0
        for prompt in prompts:
            image = images.get(prompt.id)
            if image is None:
                image = GeneratedImage(prompt_id=prompt.id, post_id=post_id, status=Status.QUEUED)
                session.add(image)
            elif image.status == Status.SUCCEEDED:
                done += 1
                continue
            elif image.status == Status.FAILED:
                # Asking again is a fresh chance: back to the queue with a clean slate.
                image.status, image.error_code, image.error_message = Status.QUEUED, None, None
                image.attempts = 0
            # Queued or running (perhaps left by a killed run) jobs join this batch; a live
            # lease stays with its holder, a dead one is re-claimed by our worker.
            image.batch_id = batch_id
            queued.append(image)
        await session.flush()  # one round trip for the whole post; assigns the new ids
        await record_events(session, [(image.id, batch_id) for image in queued], Status.QUEUED)
        return [image.id for image in queued], done

    async def set_batch_total(self, batch_id: int, total: int) -> None:
        async with self.sessions.begin() as session:
            await session.execute(update(Batch).where(Batch.id == batch_id).values(total=total))

    async def finish_batch(self, batch_id: int) -> None:
        async with self.sessions.begin() as session:
            await session.execute(
                update(Batch).where(Batch.id == batch_id).values(finished_at=utcnow())
            )

    # Jobs and the ledger ----------------------------------------------------------------

    async def job_context(self, image_id: int) -> JobContext:
        async with self.sessions() as session:
            image = await session.get(GeneratedImage, image_id)
            assert image is not None, f"claimed image {image_id} vanished"
            prompt = await session.get(ImagePromptRow, image.prompt_id)
            post = await session.get(BlogPost, image.post_id)
            return JobContext(image_id, prompt, post, dict(image.options or {}))

    async def open_attempt(self, image_id: int, *, owner: str, provider: str, model: str | None,
                           number: int, estimate: float | None, budget: Budget | None = None) -> int:
        """Write a ``pending`` ledger row for a call about to be made; return its id.

        The budget is checked in the same serialized transaction, so the row is the reservation:
        BudgetExceededError leaves nothing behind, and no call may be made.
        """
        async with self.sessions.begin() as session:
            if budget is not None:
                await budget.check(session, estimate, utcnow())
            row = GenerationAttempt(
                image_id=image_id, attempt=number, provider=provider, model=model,
                outcome=PENDING, latency_ms=0, cost_usd=None, estimated_cost_usd=estimate,
                lease_owner=owner,
            )
            session.add(row)
            await session.flush()
            return row.id

    async def close_attempt(self, attempt_id: int, record: AttemptRecord) -> None:
        """Record how the call ended and what it cost (NULL when the price is unknown)."""
        async with self.sessions.begin() as session:
            await session.execute(
                update(GenerationAttempt).where(GenerationAttempt.id == attempt_id).values(
                    model=record.model, outcome=record.outcome.value, http_status=record.http_status,
                    latency_ms=record.latency_ms, cost_usd=record.cost_usd, error=record.error,
                )
            )

    async def batch_counts(self, batch_id: int) -> dict[str, int]:
        async with self.sessions() as session:
            rows = await session.execute(
                select(GeneratedImage.status, func.count())
                .where(GeneratedImage.batch_id == batch_id)
                .group_by(GeneratedImage.status)
            )
            counts = {status.value: 0 for status in Status}
            counts.update({status: count for status, count in rows.all()})
            return counts

    async def batch_images(self, batch_id: int) -> list[GeneratedImage]:
        async with self.sessions() as session:
            return list(
                await session.scalars(
                    select(GeneratedImage).where(GeneratedImage.batch_id == batch_id).order_by(GeneratedImage.id)
                )
            )

    async def batch_ledger(self, batch_id: int) -> tuple[int, float, int]:
        """(provider calls, known cost in USD, calls of unknown cost) made for a batch's jobs.

        Only calls since the batch began count: a job carried over from a killed run keeps its
        earlier calls in the ledger, but they belong to that run.
        """
        async with self.sessions() as session:
            began = await session.scalar(select(Batch.created_at).where(Batch.id == batch_id))
            row = (
                await session.execute(
                    select(
                        func.count(GenerationAttempt.id),
                        func.coalesce(func.sum(GenerationAttempt.cost_usd), 0.0),
                        func.sum(case((GenerationAttempt.cost_usd.is_(None), 1), else_=0)),
                    )
                    .join(GeneratedImage, GeneratedImage.id == GenerationAttempt.image_id)
                    .where(GeneratedImage.batch_id == batch_id, GenerationAttempt.started_at >= began)
                )
            ).one()
            return int(row[0]), float(row[1]), int(row[2] or 0)

    # Reporting ---------------------------------------------------------------------------

    async def stats(self) -> dict:
        """Totals for ``blogimg stats``: images by status, by provider, cost, bytes."""
        async with self.sessions() as session:
            by_status = dict(
                (await session.execute(
                    select(GeneratedImage.status, func.count()).group_by(GeneratedImage.status)
                )).all()
            )
            by_provider = (
                await session.execute(
                    select(
                        GenerationAttempt.provider,
                        func.count(),
                        func.sum(case((GenerationAttempt.outcome == "ok", 1), else_=0)),
                        func.coalesce(func.sum(GenerationAttempt.cost_usd), 0.0),
                        func.sum(case((GenerationAttempt.cost_usd.is_(None), 1), else_=0)),
                        func.avg(GenerationAttempt.latency_ms),
                    ).group_by(GenerationAttempt.provider).order_by(GenerationAttempt.provider)
                )
            ).all()
            size = (
                await session.execute(
                    select(
                        func.coalesce(func.sum(GeneratedImage.bytes_original), 0),
                        func.coalesce(func.sum(GeneratedImage.bytes_stored), 0),
                    ).where(GeneratedImage.status == Status.SUCCEEDED)
                )
            ).one()
            posts = await session.scalar(select(func.count()).select_from(BlogPost))
        return {
            "posts": posts or 0,
            "by_status": {status.value: by_status.get(status.value, 0) for status in Status},
            "by_provider": [
                {"provider": p, "calls": calls, "ok": ok or 0, "cost_usd": float(cost),
                 "unknown_cost_calls": unknown or 0, "mean_latency_ms": round(latency or 0)}
                for p, calls, ok, cost, unknown, latency in by_provider
            ],
            "bytes_original": int(size[0]),
            "bytes_stored": int(size[1]),
        }
