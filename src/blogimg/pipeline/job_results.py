"""What a job ends as: the finished image the catalogue keeps, or the error code of its failure."""

from __future__ import annotations

from collections.abc import Sequence

from blogimg.db.jobs import JobContext
from blogimg.db.posts import API_POST_SLUG
from blogimg.domain import (
    AttemptRecord,
    FinishedImage,
    ImageRequest,
    PromptKind,
    ProviderImage,
    Size,
    StoredVariant,
)
from blogimg.errors import (
    BlogimgError,
    BudgetExceededError,
    ConfigurationError,
    ImageRejectedError,
    InputError,
    ProviderError,
    StorageError,
)
from blogimg.imaging.process import EncodedFile, ProcessedImage
from blogimg.pipeline.alt_text import derive_alt_text
from blogimg.pipeline.provenance import MadeImage


def finished_image(context: JobContext, provider: str, image: ProviderImage, attempts: Sequence[AttemptRecord],
                   processed: ProcessedImage, generated_ms: int, processing_ms: int, caption: str | None,
                   alt_text_max_chars: int, made: MadeImage | None = None) -> FinishedImage:
    """The row a made image is saved as: its files, its cost, its alt text (the caption's, or derived),
    and its C2PA provenance (``made``: the original kept and what its manifest said)."""
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
        variants=tuple(stored_variant(file) for file in processed.variants),
        original_key=made.original.storage_key if made and made.original else None,
        original_sha256=made.original.sha256 if made and made.original else None,
        c2pa_manifest=made.manifest.state if made else "none", c2pa_detail=made.manifest.detail if made else None,
        master_quality=master.quality, master_score=master.score, master_encoder=master.encoder)


def stored_variant(file: EncodedFile) -> StoredVariant:
    """The catalogue's record of one stored variant file, with how it was encoded."""
    return StoredVariant(file.format, file.width, file.height, len(file.data), file.storage_key,
                         quality=file.quality, score=file.score, encoder=file.encoder)


def image_title(context: JobContext) -> str:
    """The title an image illustrates: its post's, or its own prompt's when sent without a post."""
    return context.prompt.prompt if context.post.slug == API_POST_SLUG else context.post.title


def image_request(context: JobContext, quality: str) -> ImageRequest:
    """What the job asks a provider for (the job's own quality option, else ``quality``)."""
    prompt, post = context.prompt, context.post
    # A prompt sent to the API without a post belongs to a placeholder post whose title
    # describes nothing: such an image is about its own prompt.
    standalone = post.slug == API_POST_SLUG
    return ImageRequest(
        prompt=prompt.prompt, size=Size.parse(prompt.size),
        quality=context.options.get("quality") or quality,
        kind=PromptKind(prompt.kind), title=image_title(context),
        subtitle="" if standalone else prompt.heading or prompt.alt_hint,
        tags=() if standalone else tuple(post.tags or ()), variation=context.variation,
    )


def failure_code(error: BlogimgError) -> str:
    """The error code an image fails with for an error blogimg raised on purpose."""
    codes: tuple[tuple[type[BlogimgError], str], ...] = (
        (ImageRejectedError, "image_rejected"), (StorageError, "storage"), (BudgetExceededError, "budget"),
        (InputError, "invalid"), (ConfigurationError, "configuration"))
    if isinstance(error, ProviderError):
        return error.code
    return next((code for kind, code in codes if isinstance(error, kind)), "failed")
