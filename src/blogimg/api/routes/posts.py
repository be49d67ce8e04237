"""/api/posts: create or update a post from markdown (extract its prompts, optionally enqueue); list posts.

Reading a post (markdown parse, front matter) is CPU work: it runs in a thread of its own, never
on the event loop, where one large or hostile post would stall every other request, /healthz
included; and it has a deadline (``post_read_timeout``), after which the request is answered.
"""

from __future__ import annotations

import asyncio
import dataclasses
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

from fastapi import APIRouter, Query

from blogimg.api.deps import DatabaseDep, RuntimeDep
from blogimg.api.errors import ApiError, errors
from blogimg.api.routes.common import utc
from blogimg.api.schemas import NO_NUL, PostIn, PostList, PostOut, PostSummaryOut, PromptOut
from blogimg.config import Settings
from blogimg.db.jobs import PostsToEnqueue
from blogimg.db.posts import PostSummary
from blogimg.domain import ExtractedPost
from blogimg.pipeline.batches import run_batch
from blogimg.pipeline.generate import extractor_for

router = APIRouter(prefix="/api/posts", tags=["posts"])
# Two readers: under the GIL more threads would not read faster, and a post past its deadline
# keeps its thread until it is done (a thread cannot be stopped), so this also bounds how much
# such abandoned work can pile up; posts beyond it wait their turn without using the CPU.
_READERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="blogimg-post-reader")


@router.post("", status_code=201, response_model=PostOut, responses=errors(401, 413, 422, 503))
async def save_post(body: PostIn, runtime: RuntimeDep) -> PostOut:
    """The post is matched by slug: sending it again updates it and keeps its finished images."""
    post = await _read_post(body, runtime.settings)
    database = runtime.database
    batch_id = None
    if body.enqueue and not post.opted_out:
        summary = await run_batch(database, PostsToEnqueue([post]))
        batch_id, post_id = summary.batch_id, summary.post_ids[0]
        prompts = await database.posts.prompts(post_id)
    else:
        saved = await database.posts.save(post)
        post_id, prompts = saved.post_id, list(saved.prompts)
    current = {prompt.fingerprint for prompt in post.prompts}
    return PostOut(id=post_id, slug=post.slug, title=post.title, batch_id=batch_id, prompts=[
        PromptOut(id=row.id, kind=row.kind, position=row.position, prompt=row.prompt, size=row.size)
        for row in prompts if row.fingerprint in current])


@router.get("", response_model=PostList, responses=errors(422))
async def list_posts(
    database: DatabaseDep,
    slug: Annotated[str | None, Query(max_length=200, pattern=NO_NUL, description="Only the post with this slug")] = None,
    cursor: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> PostList:
    """Newest first with image counts; pass ``next_cursor`` back as ``cursor`` for the next page."""
    page = await database.posts.page(slug=slug, cursor=cursor, limit=limit)
    return PostList(items=[_summary_out(item) for item in page.items], next_cursor=page.next_cursor)


async def _read_post(body: PostIn, settings: Settings) -> ExtractedPost:
    """The post's prompts, read by a reader thread within ``post_read_timeout``."""
    work = _READERS.submit(_extract, body, settings)
    waiting = asyncio.wrap_future(work)
    waiting.add_done_callback(_collect)
    try:
        done, _ = await asyncio.wait({waiting}, timeout=settings.post_read_timeout)
    finally:
        started = not work.cancel()  # succeeds only for work still queued, which then never runs
    if done:
        return waiting.result()
    if not started:
        raise ApiError(503, "unavailable", "the server is busy reading other posts; try again shortly",
                       {"Retry-After": "5"})
    raise ApiError(422, "validation", f"reading the post took longer than {settings.post_read_timeout:g} s; "
                   "is it a blog post?")


def _extract(body: PostIn, settings: Settings) -> ExtractedPost:
    return extractor_for(settings).extract(body.markdown, source="<api>", slug=body.slug or "")


def _collect(waiting: asyncio.Future[ExtractedPost]) -> None:
    # Retrieves the outcome of work nobody waits for any more, so asyncio logs no
    # "exception was never retrieved" for a post that failed after its deadline.
    if not waiting.cancelled():
        waiting.exception()


def _summary_out(post: PostSummary) -> PostSummaryOut:
    fields = dataclasses.asdict(post)
    return PostSummaryOut(**{**fields, "created_at": utc(post.created_at), "updated_at": utc(post.updated_at)})
