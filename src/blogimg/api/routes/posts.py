"""/api/posts: create or update a post from markdown, extract its prompts, optionally enqueue."""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter

from blogimg.api.deps import Authorized, RuntimeDep
from blogimg.api.errors import errors
from blogimg.api.schemas import PostIn, PostOut, PromptOut
from blogimg.db.jobs import PostsToEnqueue
from blogimg.pipeline.batches import run_batch
from blogimg.pipeline.generate import extractor_for

router = APIRouter(prefix="/api/posts", tags=["posts"])


@router.post("", status_code=201, response_model=PostOut, dependencies=[Authorized],
             responses=errors(401, 413, 422))
async def save_post(body: PostIn, runtime: RuntimeDep) -> PostOut:
    """The post is matched by slug: sending it again updates it and keeps its finished images."""
    post = extractor_for(runtime.settings).extract(body.markdown, source="<api>", default_slug=body.slug or "")
    if body.slug:
        post = dataclasses.replace(post, slug=body.slug)
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
