"""What a job ends as: the finished image the catalogue keeps, or the error code of its failure."""

from __future__ import annotations

from collections.abc import Sequence

from blogimg.db.jobs import JobContext
from blogimg.db.posts import API_POST_SLUG
from blogimg.domain import AttemptRecord, FinishedImage, ProviderImage, StoredVariant
from blogimg.errors import (
    BlogimgError,
    BudgetExceededError,
    ConfigurationError,
    ImageRejectedError,
    InputError,
    ProviderError,
    StorageError,
)
from blogimg.imaging.process import ProcessedImage
from blogimg.pipeline.alt_text import derive_alt_text


def finished_image(context: JobContext, provider: str, image: ProviderImage, attempts: Sequence[AttemptRecord],
                   processed: ProcessedImage, generated_ms: int, processing_ms: int, caption: str | None,
                   alt_text_max_chars: int) -> FinishedImage:
    """The row a made image is saved as: its files, its cost, and its alt text (the caption's, or derived)."""
    prompt, post, master = context.prompt, context.post, processed.master
    costs = [attempt.cost_usd for attempt in attempts]
    # One unknown price makes the image's total unknown: never report a guess as a fact.
    known = [cost for cost in costs if cost is not None]
    cost = round(sum(known), 6) if len(known) == len(costs) else None
    alt_text = caption or derive_alt_text(
        kind=prompt.kind, prompt=prompt.prompt, title=image_title(context), summary=post.summary,
        heading=prompt.heading, alt_hint=prompt.alt_hint, provider_alt=image.alt_text,
        max_chars=alt_text_max_chars)
    return FinishedImage(
        provider=provider, model=image.model, cost_usd=cost,
        latency_ms=generated_ms, processing_ms=processing_ms,
        width=master.width, height=master.height, format=master.format,
        bytes_original=processed.bytes_in, bytes_stored=len(master.data),
        sha256=master.sha256, storage_key=master.storage_key,
        thumbnail_key=processed.thumbnail.storage_key, alt_text=alt_text,
        revised_prompt=image.revised_prompt, lqip=processed.lqip, dominant_color=processed.dominant_color,
        variants=tuple(StoredVariant(file.format, file.width, file.height, len(file.data), file.storage_key)
                       for file in processed.variants))


def image_title(context: JobContext) -> str:
    """The title an image illustrates: its post's, or its own prompt's when sent without a post."""
    return context.prompt.prompt if context.post.slug == API_POST_SLUG else context.post.title


def failure_code(error: BlogimgError) -> str:
    """The error code an image fails with for an error blogimg raised on purpose."""
    codes: tuple[tuple[type[BlogimgError], str], ...] = (
        (ImageRejectedError, "image_rejected"), (StorageError, "storage"), (BudgetExceededError, "budget"),
        (InputError, "invalid"), (ConfigurationError, "configuration"))
    if isinstance(error, ProviderError):
        return error.code
    return next((code for kind, code in codes if isinstance(error, kind)), "failed")
