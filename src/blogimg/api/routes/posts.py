"""/api/posts: create or update a post from markdown, extract its prompts, optionally enqueue."""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter
from sqlalchemy import select

from blogimg.api.routes.common import Authorized, State, errors
from blogimg.api.schemas import PostIn, PostOut, PromptOut
from blogimg.db.tables import ImagePromptRow
from blogimg.pipeline.generate import extractor_for

router = APIRouter(prefix="/api/posts", tags=["posts"])


@router.post("", status_code=201, response_model=PostOut, dependencies=[Authorized],
             responses=errors(401, 413, 422))
async def save_post(body: PostIn, state: State) -> PostOut:
    """The post is matched by slug: sending it again updates it and keeps its finished images."""
    post = extractor_for(state.settings).extract(body.markdown, source="<api>", default_slug=body.slug or "")
    if body.slug:
        post = dataclasses.replace(post, slug=body.slug)
    repository = state.repository
    assert repository is not None
    batch_id = None
    if body.enqueue and not post.opted_out:
        batch_id = await repository.create_batch()
        result = await repository.save_post_and_enqueue(post, batch_id)
        await repository.set_batch_total(batch_id, len(result.queued_image_ids))
        post_id = result.post_id
    else:
        post_id, _ = await repository.save_post(post)
    async with repository.sessions() as session:
        prompts = list(await session.scalars(
            select(ImagePromptRow).where(ImagePromptRow.post_id == post_id).order_by(ImagePromptRow.position)))
    current = {prompt.fingerprint for prompt in post.prompts}
    return PostOut(id=post_id, slug=post.slug, title=post.title, batch_id=batch_id, prompts=[
        PromptOut(id=row.id, kind=row.kind, position=row.position, prompt=row.prompt, size=row.size)
        for row in prompts if row.fingerprint in current])
