"""Request and response bodies of the REST API; the OpenAPI document is generated from these."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from blogimg.domain import PromptKind, Status

Kind = Literal["cover", "inline", "section"]
Quality = Literal["low", "medium", "high", "auto"]
SizeText = Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{1,3}x[1-9][0-9]{1,3}$")]
ProviderName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
#: Text without NUL characters: PostgreSQL cannot store them, so they are refused at the door.
NO_NUL = r"^[^\x00]*$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    code: str = Field(description="Machine-readable: validation, not_found, unauthorized, too_large, conflict, …")
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class PromptIn(Strict):
    prompt: Annotated[str, StringConstraints(min_length=1, max_length=4000, pattern=NO_NUL)]
    kind: Kind = "inline"
    size: SizeText | None = None


class GenerateOptions(Strict):
    providers: Annotated[list[ProviderName], Field(min_length=1, max_length=10)] | None = None
    quality: Quality | None = None
    size: SizeText | None = Field(None, description="Size for prompts that do not give their own.")
    variations: int = Field(1, ge=1, le=4, description="Images per prompt.")


class GenerateRequest(Strict):
    # At least one of blog_post_id and prompts: said in the schema, not only in the handler.
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "anyOf": [{"required": ["blog_post_id"]}, {"required": ["prompts"]}]})

    # null is the same as leaving the field out.
    blog_post_id: int | None = Field(None, ge=1, le=2**31 - 1, description="Queue this post's own prompts")
    prompts: list[PromptIn] | None = Field(None, min_length=1, max_length=50)
    options: GenerateOptions | None = None


class GenerateResponse(BaseModel):
    batch_id: int
    image_ids: list[int]


#: How a file was encoded: a variant's fields, and the image's ``master_*`` ones.
_QUALITY = "Encoder quality the file was made at; null when lossless, or for files made before it was recorded"
_SCORE = "SSIMULACRA2 score of the file against the source at its size (90: visually lossless); null if not measured"
_ENCODER = "Encoder that wrote the file: jpegli, mozjpeg, libwebp, libwebp-lossless, libaom or libpng; null if unknown"


class VariantOut(BaseModel):
    format: str
    width: int
    height: int
    url: str
    bytes: int
    quality: int | None = Field(default=None, description=_QUALITY)
    score: float | None = Field(default=None, description=_SCORE)
    encoder: str | None = Field(default=None, description=_ENCODER)


class FocalPoint(Strict):
    x: float = Field(ge=0, le=1)
    y: float = Field(ge=0, le=1)


class ImageOut(BaseModel):
    id: int
    status: Status
    prompt_id: int
    post_id: int
    batch_id: int | None
    prompt: str
    kind: PromptKind = Field(description="Where the image goes in its post, from its prompt")
    position: int = Field(description="The prompt's place in its post (API prompts sort after the post's own)")
    url: str | None
    thumbnail_url: str | None
    variants: list[VariantOut]
    alt_text: str | None
    provider: str | None
    model: str | None
    cost_usd: float | None = Field(description="null when the price is unknown")
    latency_ms: int | None
    width: int | None
    height: int | None
    format: str | None
    bytes_original: int | None
    bytes_stored: int | None
    lqip: str | None
    dominant_color: str | None
    revised_prompt: str | None
    focal_point: FocalPoint | None
    rating: int | None
    tags: list[str]
    error_code: str | None
    error_message: str | None
    created_at: datetime
    updated_at: datetime
    c2pa_manifest: Literal["none", "valid", "invalid"] = Field(
        default="none", description="Whether the provider's original carried a C2PA manifest, and whether it "
                                    "validated (signature, hashes); untrusted signers still count as valid")
    c2pa_detail: str | None = Field(
        default=None, description="The C2PA SDK's validation state and failure codes, e.g. "
                                  "'Valid; signingCredential.untrusted'")
    master_quality: int | None = Field(default=None, description=_QUALITY)
    master_score: float | None = Field(default=None, description=_SCORE)
    master_encoder: str | None = Field(default=None, description=_ENCODER)
    missing_files: list[str] | None = Field(
        default=None, description="Storage keys this image's rows name that storage no longer holds; checked "
                                  "when one image is read (null in lists). POST .../repair makes them again.")
    markup: str | None = Field(
        default=None, description="Ready <picture> HTML: AVIF and WebP sources with srcset and sizes, an <img> with "
                                  "width, height, lazy loading (eager for a cover), alt text and the LQIP as its "
                                  "background; null until the image has succeeded")


class ImageList(BaseModel):
    items: list[ImageOut]
    next_cursor: str | None


class ImageUpdate(Strict):
    alt_text: Annotated[str, StringConstraints(max_length=1000, pattern=NO_NUL)] | None = None
    rating: int | None = Field(None, ge=1, le=5)
    focal_point: FocalPoint | None = None
    tags: Annotated[list[Annotated[str, StringConstraints(min_length=1, max_length=50, pattern=NO_NUL)]],
                    Field(max_length=30)] | None = None


class StatsRow(BaseModel):
    provider: str | None
    model: str | None
    status: Status
    day: str
    count: int
    success_rate: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    cost_usd: float
    unknown_cost_images: int
    bytes_stored: int


class StatsOut(BaseModel):
    items: list[StatsRow]


class CleanupOut(BaseModel):
    applied: bool
    grace_seconds: float
    files_without_rows: list[str]
    rows_missing_files: list[int]
    deleted: list[str]
    kept_undated: list[str] = Field(description="Orphan files kept because the storage gives no age for them "
                                                "(grace_seconds=0 deletes them: safe only with every worker stopped)")
    repairable: list[int] = Field(description="Succeeded images with missing files whose master is stored")
    masters_missing: list[int] = Field(description="Succeeded images whose master is gone: only a provider "
                                                   "can make them again (remake=true)")
    originals_missing: list[int] = Field(default_factory=list, description="Images whose kept C2PA original "
                                         "is gone from storage: it cannot be made again")
    repaired: list[int] = Field(description="Images whose missing files were made again from the master")
    remade_batch_id: int | None = Field(description="The batch that queued lost images for a provider")


class RepairOut(BaseModel):
    image: ImageOut
    missing_files: list[str] = Field(description="The keys that were missing before the repair")
    repaired_files: list[str] = Field(description="The keys written again from the stored master")
    remade_batch_id: int | None = Field(description="Set when the image was queued for a provider again")


class PostIn(Strict):
    markdown: Annotated[str, StringConstraints(min_length=1, max_length=500_000, pattern=NO_NUL)]
    slug: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,199}$")] | None = None
    enqueue: bool = False


class PromptOut(BaseModel):
    id: int
    kind: str
    position: int
    prompt: str
    size: str


class PostOut(BaseModel):
    id: int
    slug: str
    title: str
    prompts: list[PromptOut]
    batch_id: int | None = None


class PostSummaryOut(BaseModel):
    id: int
    slug: str
    title: str
    created_at: datetime
    updated_at: datetime
    prompt_count: int
    image_count: int = Field(description="Every image of the post, whatever its status")
    succeeded_count: int


class PostList(BaseModel):
    items: list[PostSummaryOut]
    next_cursor: str | None


class BatchCounts(BaseModel):
    queued: int
    running: int
    succeeded: int
    failed: int


class BatchOut(BaseModel):
    id: int
    done: bool
    counts: BatchCounts
    cost_usd: float
    image_ids: list[int]


class Health(BaseModel):
    status: Literal["ok"]
    database: Literal["ok"]


# Attempts, failures and bulk retry (the image and failures views) --------------------------------

class AttemptOut(BaseModel):
    attempt: int = Field(description="The claim of the job this call was made under (1, 2, …)")
    provider: str
    model: str | None
    outcome: str = Field(description="ok, refused, transient, quota, invalid, empty; pending while in flight")
    http_status: int | None
    latency_ms: int
    cost_usd: float | None = Field(description="null when the price is unknown or the call is in flight")
    estimated_cost_usd: float | None = Field(description="What the budget reserved before the call")
    error: str | None
    started_at: datetime


class AttemptList(BaseModel):
    items: list[AttemptOut] = Field(description="Oldest first")


class CountedOut(BaseModel):
    value: str
    count: int = Field(description="Failed images")


class FailedImageOut(BaseModel):
    id: int
    post_id: int
    prompt: str
    error_message: str | None
    failed_at: datetime | None


class FailureGroupOut(BaseModel):
    error_code: str
    count: int
    newest_at: datetime | None = Field(description="When the newest of these images failed")
    providers: list[CountedOut] = Field(description="Providers called for these images, by images")
    messages: list[CountedOut] = Field(description="The commonest messages, most images first")
    examples: list[FailedImageOut] = Field(description="The newest images of the group")


class FailuresOut(BaseModel):
    total: int = Field(description="Failed images the filter matches")
    groups: list[FailureGroupOut] = Field(description="Most images first")
    other_codes: int = Field(description="Error codes matched but left out of groups")
    retry_limit: int = Field(description="The most images one POST /api/images/retry queues")


class BulkRetryRequest(Strict):
    """The search filters; status is always ``failed``. An empty body means every failed image."""

    q: Annotated[str, StringConstraints(max_length=200, pattern=NO_NUL)] | None = Field(
        None, description="Text in the prompt or alt text")
    provider: Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=NO_NUL)] | None = None
    post_id: int | None = Field(None, ge=1, le=2**31 - 1)
    kind: Kind | None = None
    error_code: Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=NO_NUL)] | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
