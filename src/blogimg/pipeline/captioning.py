"""A vision model's alt text for an image the worker has just stored."""

from __future__ import annotations

import logging

from blogimg.db.jobs import JobContext
from blogimg.imaging.process import ProcessedImage
from blogimg.pipeline.alt_text import shorten
from blogimg.pipeline.chain import CaptionChain, ChainSuccess
from blogimg.pipeline.job_ledger import JobLedger
from blogimg.providers.base import CaptionRequest

log = logging.getLogger(__name__)


async def caption_image(captions: CaptionChain | None, context: JobContext, processed: ProcessedImage,
                        ledger: JobLedger, first_attempt: int, max_chars: int) -> str | None:
    """A caption for the stored image, or None to keep the derived alt text.

    The call goes through the caption chain: the same retries, ledger rows and budget as an
    image's calls. A caption is a nicety, never a reason to fail an image.
    """
    if captions is None or context.prompt.alt_hint:
        return None  # an author's own alt text beats any model's
    small = [f for f in processed.variants if f.format in ("webp", "jpeg")] or [processed.master]
    image = min(small, key=lambda f: (f.width < 480, f.width))  # the smallest that is still legible
    post = context.post
    request = CaptionRequest(image=image.data, mime_type=image.content_type, title=post.title,
                             summary=post.summary or "", language=post.language or "en", max_chars=max_chars)
    result = await captions.caption(request, ledger=ledger, first_attempt=first_attempt)
    if not isinstance(result, ChainSuccess):
        log.info("image %s keeps its derived alt text: %s: %s", context.image_id, result.code, result.error)
        return None
    return shorten(result.result.text, max_chars)
