"""/api/posts: create or update a post from markdown (extract its prompts, optionally enqueue); list posts."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Query

from blogimg.api.deps import Authorized, DatabaseDep, RuntimeDep
from blogimg.api.errors import errors
from blogimg.api.routes.common import utc
from blogimg.api.schemas import NO_NUL, PostIn, PostList, PostOut, PostSummaryOut, PromptOut
from blogimg.db.jobs import PostsToEnqueue
from blogimg.db.posts import PostSummary
from blogimg.pipeline.batches import run_batch
from blogimg.pipeline.generate import extractor_for

router = APIRouter(prefix="/api/posts", tags=["posts"])


@router.post("", status_code=201, response_model=PostOut, dependencies=[Authorized],
             responses=errors(401, 413, 422))
async def save_post(body: PostIn, runtime: RuntimeDep) -> PostOut:
    """The post is matched by slug: sending it again updates it and keeps its finished images."""
    post = extractor_for(runtime.settings).extract(body.markdown, source="<api>", slug=body.slug or "")
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


def _summary_out(post: PostSummary) -> PostSummaryOut:
    fields = dataclasses.asdict(post)
    return PostSummaryOut(**{**fields, "created_at": utc(post.created_at), "updated_at": utc(post.updated_at)})
