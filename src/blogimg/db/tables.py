"""SQLAlchemy 2 typed tables. Alembic (db/migrations) owns the schema; this mirrors it.

The shared pieces (``Base``, ``utcnow``, ``EnumText``) live in db/table_base.py and the operations
tables (webhooks, alerts) in db/operations_tables.py; both are re-exported here, and importing this
module puts every table in ``Base.metadata`` (what Alembic compares against).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from blogimg.db.operations_tables import Alert, WebhookDelivery, WebhookEndpoint
from blogimg.db.table_base import Base, EnumText, Timestamped, utcnow
from blogimg.domain import Outcome, Status

__all__ = [
    "Alert", "AttemptRollup", "AttemptRollupDelta", "Base", "Batch", "BlogPost", "EnumText", "GeneratedImage",
    "GenerationAttempt", "ImageEvent", "ImagePromptRow", "ImageRollup", "ImageRollupDelta", "ImageVariant",
    "LatencyBucket", "Timestamped", "WebSession", "WebhookDelivery", "WebhookEndpoint", "utcnow",
]


class BlogPost(Timestamped, Base):
    """A post whose images blogimg manages."""

    __tablename__ = "blog_posts"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(200), unique=True)
    title: Mapped[str] = mapped_column(Text)
    markdown: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    language: Mapped[str] = mapped_column(String(35), default="en")
    source_path: Mapped[str | None] = mapped_column(Text)
    images_enabled: Mapped[bool] = mapped_column(default=True)


class ImagePromptRow(Timestamped, Base):
    """One image a post needs; identified within its post by ``fingerprint``."""

    __tablename__ = "image_prompts"
    __table_args__ = (
        UniqueConstraint("post_id", "fingerprint"),
        Index(None, "post_id", "position"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("blog_posts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    position: Mapped[int] = mapped_column(Integer)
    prompt: Mapped[str] = mapped_column(Text)
    size: Mapped[str] = mapped_column(String(16))
    fingerprint: Mapped[str] = mapped_column(String(64))
    alt_hint: Mapped[str] = mapped_column(Text, default="")
    heading: Mapped[str] = mapped_column(Text, default="")
    line: Mapped[int | None] = mapped_column(Integer)


class GeneratedImage(Timestamped, Base):
    """The job row and its result: the queue is this table."""

    __tablename__ = "generated_images"
    __table_args__ = (
        UniqueConstraint("prompt_id", "variation"),
        Index(None, "status", "lease_expires_at"),
        Index(None, "batch_id", "status"),
        Index(None, "post_id"),
        Index(None, "created_at", "id"),
        Index(None, "provider", "status"),
        Index(None, "finished_at"),  #: the alerts' window of finished images (0011)
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("image_prompts.id", ondelete="CASCADE"))
    post_id: Mapped[int] = mapped_column(ForeignKey("blog_posts.id", ondelete="CASCADE"))
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id", ondelete="SET NULL"))
    variation: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[Status] = mapped_column(EnumText(Status), default=Status.QUEUED)
    error_code: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_token: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    provider: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(128))
    cost_usd: Mapped[float | None] = mapped_column(Float)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    processing_ms: Mapped[int | None] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    format: Mapped[str | None] = mapped_column(String(16))
    bytes_original: Mapped[int | None] = mapped_column(Integer)
    bytes_stored: Mapped[int | None] = mapped_column(Integer)
    sha256: Mapped[str | None] = mapped_column(String(64))
    #: URLs are not stored: they follow from the key and the storage's base URL when read
    storage_key: Mapped[str | None] = mapped_column(String(512))
    thumbnail_key: Mapped[str | None] = mapped_column(String(512))
    alt_text: Mapped[str | None] = mapped_column(Text)
    revised_prompt: Mapped[str | None] = mapped_column(Text)
    lqip: Mapped[str | None] = mapped_column(Text)
    dominant_color: Mapped[str | None] = mapped_column(String(7))
    #: C2PA (0013): the provider's signed original, kept untouched, and its manifest's verdict
    original_key: Mapped[str | None] = mapped_column(String(512))
    original_sha256: Mapped[str | None] = mapped_column(String(64))
    c2pa_manifest: Mapped[str] = mapped_column(String(8), default="none", server_default="none")
    c2pa_detail: Mapped[str | None] = mapped_column(Text)
    #: how the master was encoded (0014): quality chosen, SSIMULACRA2 score, encoder; NULL = unknown
    master_quality: Mapped[int | None] = mapped_column(Integer)
    master_score: Mapped[float | None] = mapped_column(Float)
    master_encoder: Mapped[str | None] = mapped_column(String(24))
    focal_x: Mapped[float | None] = mapped_column(Float)
    focal_y: Mapped[float | None] = mapped_column(Float)
    rating: Mapped[int | None] = mapped_column(Integer)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: per-job choices from the API: {"quality": ..., "providers": [...]}; None = the worker's defaults
    options: Mapped[dict | None] = mapped_column(JSON)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()


class ImageVariant(Base):
    """One encoded file of an image at one format and width."""

    __tablename__ = "image_variants"
    __table_args__ = (UniqueConstraint("image_id", "format", "width"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("generated_images.id", ondelete="CASCADE"))
    format: Mapped[str] = mapped_column(String(16))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(Integer)
    storage_key: Mapped[str] = mapped_column(String(512))
    #: how the file was encoded (0014): quality chosen, SSIMULACRA2 score, encoder; NULL = unknown
    quality: Mapped[int | None] = mapped_column(Integer)
    score: Mapped[float | None] = mapped_column(Float)
    encoder: Mapped[str | None] = mapped_column(String(24))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class GenerationAttempt(Base):
    """The cost ledger: one row per provider call, failed ones included.

    The row is written before the call with outcome ``pending`` and the estimated cost, then
    updated with the real outcome and cost; a row left ``pending`` is a call that died mid-way.
    """

    __tablename__ = "generation_attempts"
    __table_args__ = (
        Index(None, "image_id", "attempt"),
        Index(None, "started_at"),
        Index(None, "provider", "started_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("generated_images.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    provider: Mapped[str] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(128))
    outcome: Mapped[Outcome] = mapped_column(EnumText(Outcome))
    http_status: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer)
    cost_usd: Mapped[float | None] = mapped_column(Float)  #: NULL: unknown (or still pending)
    #: what the budget reserved for the call before it was made
    estimated_cost_usd: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)


class Batch(Base):
    """A group of jobs enqueued together (one ``generate`` run or one API request)."""

    __tablename__ = "batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    request_hash: Mapped[str | None] = mapped_column(String(64))
    #: every image the request named (queued now or already made), so a repeated request
    #: answers exactly the same and the batch's progress describes exactly these
    image_ids: Mapped[list[int] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ImageEvent(Base):
    """A change of an image's status, for ``GET /api/events`` in any process.

    Written in the same transaction as the change itself, so readers never see an event for a
    change that did not happen; the id orders events and is the SSE event id.
    """

    __tablename__ = "image_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(Integer, index=True)
    batch_id: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[Status] = mapped_column(EnumText(Status))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# Rollups (migration 0008; db/rollups.py): what the stats and the status page read instead of
# scanning images and calls. Database triggers keep them in step with every write. Keys are never
# NULL ('' stands for no provider or model, bucket -1 for no latency) so one key is one row.

_ROLLUP_ID = BigInteger().with_variant(Integer, "sqlite")  #: a delta's id; SQLite's rowid is 64-bit anyway


class LatencyBucket(Base):
    """One bucket of the rollups' latency histograms: latencies up to ``upper_ms`` above the last bound."""

    __tablename__ = "rollup_latency_buckets"

    bucket: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    upper_ms: Mapped[int] = mapped_column(BigInteger, unique=True)


class _ImageRollupColumns:
    """Images by UTC day of ``created_at``, provider, model, status and latency bucket."""

    day: Mapped[str] = mapped_column(String(10))
    provider: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(128))
    status: Mapped[Status] = mapped_column(EnumText(Status))
    latency_bucket: Mapped[int] = mapped_column(Integer)
    images: Mapped[int] = mapped_column(BigInteger)
    bytes_original: Mapped[int] = mapped_column(BigInteger)
    bytes_stored: Mapped[int] = mapped_column(BigInteger)
    cost_usd: Mapped[float] = mapped_column(Float)  #: known cost of every ledger call made for these images
    unknown_cost_images: Mapped[int] = mapped_column(BigInteger)  #: succeeded ones with a call of unknown cost


class ImageRollup(_ImageRollupColumns, Base):
    __tablename__ = "image_rollups"
    __table_args__ = (PrimaryKeyConstraint("day", "provider", "model", "status", "latency_bucket"),)


class ImageRollupDelta(_ImageRollupColumns, Base):
    """A change to ``image_rollups`` not folded in yet (PostgreSQL; see db/rollups.py)."""

    __tablename__ = "image_rollup_deltas"

    id: Mapped[int] = mapped_column(_ROLLUP_ID, primary_key=True)


class _AttemptRollupColumns:
    """Provider calls by UTC day of ``started_at``, provider, model, outcome and latency bucket."""

    day: Mapped[str] = mapped_column(String(10))
    provider: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(128))
    outcome: Mapped[Outcome] = mapped_column(EnumText(Outcome))
    latency_bucket: Mapped[int] = mapped_column(Integer)  #: -1 for a pending call
    calls: Mapped[int] = mapped_column(BigInteger)
    cost_usd: Mapped[float] = mapped_column(Float)  #: known costs
    unknown_cost_calls: Mapped[int] = mapped_column(BigInteger)
    spent_usd: Mapped[float] = mapped_column(Float)  #: what a budget counts: the cost, else the reserved estimate


class AttemptRollup(_AttemptRollupColumns, Base):
    __tablename__ = "attempt_rollups"
    __table_args__ = (PrimaryKeyConstraint("day", "provider", "model", "outcome", "latency_bucket"),)


class AttemptRollupDelta(_AttemptRollupColumns, Base):
    """A change to ``attempt_rollups`` not folded in yet (PostgreSQL; see db/rollups.py)."""

    __tablename__ = "attempt_rollup_deltas"

    id: Mapped[int] = mapped_column(_ROLLUP_ID, primary_key=True)


class WebSession(Base):
    """A page sign-in (db/sessions.py): what the ``blogimg_session`` cookie stands for, in any process.

    Only a hash of the cookie's token is kept, so reading this table signs nobody in; the key's
    fingerprint ends the session once that key leaves the settings.
    """

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))  #: "full" or "read" (api/auth.py's Role)
    key_fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
