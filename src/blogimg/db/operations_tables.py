"""The operations tables: webhook endpoints and their outbox (migration 0010), alert episodes (0011).

They share ``Base`` (db/table_base.py), so Alembic's metadata holds them whenever db/tables.py,
which imports this module, is imported. The counters /metrics reads (``metric_counts``,
``worker_circuits``, migration 0012) are declared where they are used, in db/metric_counts.py.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from blogimg.db.table_base import Base, utcnow


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
