"""SQLAlchemy 2 typed tables. Alembic (db/migrations) owns the schema; this mirrors it.

Times are naive UTC datetimes written by Python, so SQLite's text storage compares correctly
and PostgreSQL's timestamps agree with it.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from blogimg.domain import Outcome, Status


def utcnow() -> datetime:
    """Now, in UTC, without tzinfo (the form every table stores)."""
    return datetime.now(UTC).replace(tzinfo=None)


class EnumText(TypeDecorator[Any]):
    """A string enum stored as its value in a plain string column (the schema stays VARCHAR).

    Writing a value the enum does not have raises at once; reading gives the enum member, so
    ``Mapped[Status]`` is what the code gets, not a bare string.
    """

    impl = String(16)
    cache_ok = True

    def __init__(self, enum_type: type[enum.StrEnum]) -> None:
        super().__init__()
        self.enum_type = enum_type

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else self.enum_type(value).value

    def process_result_value(self, value: Any, dialect: Dialect) -> enum.StrEnum | None:
        return None if value is None else self.enum_type(value)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


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


class WebhookEndpoint(Base):
    """Where webhooks go (db/webhook_deliveries.py): from BLOGIMG_WEBHOOK_URLS or added through the API."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (UniqueConstraint("url"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(200))  #: 'whsec_…': never logged, shown once when generated
    enabled: Mapped[bool] = mapped_column(default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16))  #: 'settings' or 'api'
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One event for one endpoint: the outbox row, written in the transaction of the change it reports.

    The sender claims a due row under a lease (``lease_token``) so two workers never send it at
    once, and a killed worker's row is sent by another once the lease runs out.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "message_id"),
        Index(None, "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    message_id: Mapped[str] = mapped_column(String(100))  #: the webhook-id header: receivers deduplicate by it
    event_type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[str] = mapped_column(Text)  #: the exact body signed and sent, every attempt alike
    status: Mapped[str] = mapped_column(String(16), default="pending")  #: pending, delivered or failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_token: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column()


class Alert(Base):
    """One episode of an alert rule for one subject (migration 0011; db/alerts.py): opened firing,
    closed resolved, never changed after. At most one firing row per (rule, subject)."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_open", "rule", "subject", unique=True,
              sqlite_where=text("state = 'firing'"), postgresql_where=text("state = 'firing'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    rule: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(200))  #: a provider, a budget period, or '' for the system
    state: Mapped[str] = mapped_column(String(16))  #: "firing" or "resolved"
    value: Mapped[float | None] = mapped_column(Float)  #: what the rule measured, last seen while firing
    threshold: Mapped[float | None] = mapped_column(Float)
    message: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
