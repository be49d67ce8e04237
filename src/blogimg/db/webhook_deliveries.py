"""Webhook endpoints and the delivery log: configure endpoints, claim due deliveries under a lease, record results.

Claiming is the job queue's pattern (db/queue/work.py): one UPDATE … RETURNING over the due rows,
picked with FOR UPDATE SKIP LOCKED on PostgreSQL and under SQLite's BEGIN IMMEDIATE, stamped with
a fresh lease token. Every result names that token, so a sender whose lease ran out (paused,
presumed dead) records nothing, and two senders never hold one delivery at once. A killed
sender's rows become due again when their lease expires: nothing is lost, and a receiver that
saw the first try recognises the repeat by its ``webhook-id``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Update, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from blogimg.db.engine import reader
from blogimg.db.failures import reconnecting, retrying, retrying_conflicts
from blogimg.db.tables import WebhookDelivery, WebhookEndpoint, utcnow
from blogimg.errors import ConflictError

SETTINGS_SOURCE, API_SOURCE = "settings", "api"
DELIVERY_STATUSES = ("pending", "delivered", "failed")
REMOVED_FROM_SETTINGS = "removed from BLOGIMG_WEBHOOK_URLS"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An endpoint as the API shows it: never its secret."""

    id: int
    url: str
    enabled: bool
    disabled_reason: str | None
    source: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A delivery this sender holds until ``lease_token`` expires: what to send, where, signed how."""

    id: int
    lease_token: str
    attempts: int  #: counting this one
    message_id: str
    event_type: str
    payload: str
    endpoint_id: int
    url: str
    secret: str


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One row of the delivery log (no payload: it is the receiver's business, not the log's)."""

    id: int
    endpoint_id: int
    url: str
    message_id: str
    event_type: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime | None  #: None once delivered or failed
    delivered_at: datetime | None


@dataclass(frozen=True, slots=True)
class DeliveryPage:
    items: list[DeliveryRecord]
    next_cursor: str | None


class Webhooks:
    """Endpoints, and the outbox rows db/webhooks.py writes, as the sender and the API use them."""

    def __init__(self, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.engine, self.sessions = engine, sessions

    # Endpoints -------------------------------------------------------------------------------

    @retrying_conflicts  # processes starting together add one URL at once: the loser finds the winner's row
    async def sync_configured(self, urls: Sequence[str], secret: str | None) -> list[Endpoint]:
        """Make the settings' endpoints exactly ``urls`` (with ``secret``); the endpoints that now stand.

        A URL no longer configured is disabled, not deleted (its delivery log stays), and its
        pending deliveries fail as :meth:`disable` fails them: nobody would ever send them. One
        that a 410 disabled stays disabled while it is configured: the receiver said it is gone.
        """
        async with self.sessions.begin() as session:
            rows = {row.url: row for row in await session.scalars(select(WebhookEndpoint).with_for_update())}
            for url in urls:
                row = rows.get(url)
                if row is None:
                    session.add(WebhookEndpoint(url=url, secret=secret or "", enabled=True, source=SETTINGS_SOURCE,
                                                created_at=utcnow()))
                elif row.source == SETTINGS_SOURCE:
                    row.secret = secret or row.secret
                    if not row.enabled and row.disabled_reason == REMOVED_FROM_SETTINGS:
                        row.enabled, row.disabled_reason = True, None
            removed = [row for row in rows.values() if row.source == SETTINGS_SOURCE and row.url not in urls
                       and row.enabled]
            for row in removed:
                row.enabled, row.disabled_reason = False, REMOVED_FROM_SETTINGS
            if removed:
                await session.execute(_fail_pending([row.id for row in removed], REMOVED_FROM_SETTINGS))
            await session.flush()
            return [_endpoint(row) for row in await session.scalars(select(WebhookEndpoint)
                                                                    .order_by(WebhookEndpoint.id))]

    async def add(self, url: str, secret: str) -> Endpoint:
        """A new endpoint from the API; ConflictError when the URL has one already."""
        try:
            async with self.sessions.begin() as session:
                row = WebhookEndpoint(url=url, secret=secret, enabled=True, source=API_SOURCE, created_at=utcnow())
                session.add(row)
                await session.flush()
                return _endpoint(row)
        except IntegrityError:
            raise ConflictError(f"an endpoint for {url} exists already") from None

    @reconnecting
    async def endpoints(self) -> list[Endpoint]:
        async with self.sessions() as session:
            return [_endpoint(row) for row in await session.scalars(select(WebhookEndpoint)
                                                                    .order_by(WebhookEndpoint.id))]

    @reconnecting
    async def endpoint(self, endpoint_id: int) -> Endpoint | None:
        async with self.sessions() as session:
            row = await session.get(WebhookEndpoint, endpoint_id)
            return _endpoint(row) if row is not None else None

    @reconnecting
    async def disable(self, endpoint_id: int, reason: str) -> bool:
        """Stop sending to an endpoint: its pending deliveries fail with ``reason``; False if unknown."""
        async with self.engine.begin() as connection:
            changed = await connection.execute(update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
                                               .values(enabled=False, disabled_reason=reason))
            await connection.execute(_fail_pending([endpoint_id], reason))
            return bool(changed.rowcount)

    @reconnecting
    async def enable(self, endpoint_id: int) -> bool:
        async with self.engine.begin() as connection:
            changed = await connection.execute(update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
                                               .values(enabled=True, disabled_reason=None))
            return bool(changed.rowcount)

    @reconnecting
    async def delete(self, endpoint_id: int) -> bool:
        """Delete an endpoint and its delivery log; False when there was none."""
        async with self.engine.begin() as connection:
            # Children first: SQLite enforces ON DELETE CASCADE only with foreign keys on.
            await connection.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id))
            result = await connection.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id))
            return bool(result.rowcount)

    # Sending ----------------------------------------------------------------------------------

    @reconnecting
    async def due_now(self) -> bool | None:
        """Whether a delivery is due now; None when no endpoint is enabled, so none can be.

        A read, for the sender to ask before it claims: a claim is an UPDATE under SQLite's write
        lock, and one every second with nothing to send would take it from the workers' jobs for
        nothing. Through ``reader``: on SQLite this read does not queue for the write lock either.
        """
        now = utcnow()
        enabled = select(WebhookEndpoint.id).where(WebhookEndpoint.enabled.is_(True)).limit(1)
        due = (select(WebhookDelivery.id)
               .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
               .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now,
                      WebhookEndpoint.enabled.is_(True),
                      or_(WebhookDelivery.lease_expires_at.is_(None), WebhookDelivery.lease_expires_at < now))
               .limit(1))
        async with reader(self.engine).connect() as connection:
            if await connection.scalar(enabled) is None:
                return None
            return await connection.scalar(due) is not None

    async def claim_due(self, *, limit: int, lease_seconds: float) -> list[ClaimedDelivery]:
        """Claim up to ``limit`` due deliveries of enabled endpoints (oldest first) under a fresh lease."""
        token = uuid.uuid4().hex  # the same on every try, so a repeat finds what a first try took unseen
        return await retrying(lambda attempt: self._claim(token, attempt, limit, lease_seconds))

    async def _claim(self, token: str, attempt: int, limit: int, lease_seconds: float) -> list[ClaimedDelivery]:
        now = utcnow()
        candidates = (
            select(WebhookDelivery.id)
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now,
                   WebhookEndpoint.enabled.is_(True),
                   or_(WebhookDelivery.lease_expires_at.is_(None), WebhookDelivery.lease_expires_at < now))
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id).limit(limit)
        )
        if self.engine.dialect.name == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True, of=WebhookDelivery)
        async with self.engine.begin() as connection:
            claimed: list[Any] = []
            if attempt > 1:
                claimed = list((await connection.execute(
                    select(WebhookDelivery.id).where(WebhookDelivery.lease_token == token))).scalars())
            if not claimed:
                claimed = list((await connection.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id.in_(candidates.scalar_subquery()))
                    .values(lease_token=token, lease_expires_at=now + timedelta(seconds=lease_seconds),
                            attempts=WebhookDelivery.attempts + 1)
                    .returning(WebhookDelivery.id)
                    .execution_options(synchronize_session=False))).scalars())
            if not claimed:
                return []
            rows = (await connection.execute(
                select(WebhookDelivery.id, WebhookDelivery.attempts, WebhookDelivery.message_id,
                       WebhookDelivery.event_type, WebhookDelivery.payload, WebhookEndpoint.id,
                       WebhookEndpoint.url, WebhookEndpoint.secret)
                .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
                .where(WebhookDelivery.id.in_(claimed)).order_by(WebhookDelivery.id))).all()
        return [ClaimedDelivery(row[0], token, row[1], row[2], row[3], row[4], row[5], row[6], row[7]) for row in rows]

    @reconnecting
    async def delivered(self, delivery: ClaimedDelivery, status_code: int) -> bool:
        """The receiver took it (2xx); False when this sender no longer held it."""
        return await self._record(delivery, status="delivered", last_status_code=status_code, last_error=None,
                                  delivered_at=utcnow())

    @reconnecting
    async def try_again(self, delivery: ClaimedDelivery, *, status_code: int | None, error: str,
                        delay: float | None) -> bool:
        """Not taken: due again in ``delay`` seconds, or failed for good when ``delay`` is None."""
        if delay is None:
            return await self._record(delivery, status="failed", last_status_code=status_code, last_error=error)
        return await self._record(delivery, status="pending", last_status_code=status_code, last_error=error,
                                  next_attempt_at=utcnow() + timedelta(seconds=delay))

    async def gone(self, delivery: ClaimedDelivery, status_code: int) -> bool:
        """The receiver answered 410 Gone: this delivery fails and the endpoint is disabled."""
        reason = f"the receiver answered {status_code} Gone"
        recorded = await self._record(delivery, status="failed", last_status_code=status_code, last_error=reason)
        if recorded:
            await self.disable(delivery.endpoint_id, reason)
        return recorded

    async def _record(self, delivery: ClaimedDelivery, **values: Any) -> bool:
        async with self.engine.begin() as connection:
            result = await connection.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery.id, WebhookDelivery.lease_token == delivery.lease_token)
                .values(lease_token=None, lease_expires_at=None, **values))
            return bool(result.rowcount)

    # The delivery log ---------------------------------------------------------------------------

    @reconnecting
    async def log(self, *, endpoint_id: int | None = None, status: str | None = None, cursor: str | None = None,
                  limit: int = 50) -> DeliveryPage:
        """Deliveries newest first, ``limit`` a page; ``cursor`` is the last page's ``next_cursor``."""
        query = (select(WebhookDelivery, WebhookEndpoint.url)
                 .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
                 .order_by(WebhookDelivery.id.desc()).limit(limit + 1))
        if endpoint_id is not None:
            query = query.where(WebhookDelivery.endpoint_id == endpoint_id)
        if status is not None:
            query = query.where(WebhookDelivery.status == status)
        if cursor is not None:
            query = query.where(WebhookDelivery.id < decode_cursor(cursor))
        async with self.sessions() as session:
            rows = (await session.execute(query)).all()
        items = [_record(row, url) for row, url in rows[:limit]]
        return DeliveryPage(items, str(items[-1].id) if len(rows) > limit else None)

    @reconnecting
    async def prune(self, before: datetime, *, chunk: int = 5_000) -> int:
        """Delete delivered and failed deliveries created before ``before``; how many went.

        A chunk a transaction, so a long log never holds SQLite's write lock for long. Pending
        rows stay whatever their age: they are still to be sent.
        """
        finished = (select(WebhookDelivery.id)
                    .where(WebhookDelivery.status.in_(("delivered", "failed")), WebhookDelivery.created_at < before)
                    .limit(chunk))
        deleted = 0
        while True:
            async with self.engine.begin() as connection:
                result = await connection.execute(delete(WebhookDelivery)
                                                  .where(WebhookDelivery.id.in_(finished.scalar_subquery()))
                                                  .execution_options(synchronize_session=False))
            deleted += result.rowcount or 0
            if (result.rowcount or 0) < chunk:
                return deleted

    @reconnecting
    async def pending_count(self) -> int:
        """Deliveries not yet delivered nor failed (for tests and the page's summary)."""
        async with self.sessions() as session:
            count = await session.scalar(select(func.count()).select_from(WebhookDelivery)
                                         .where(WebhookDelivery.status == "pending"))
            return int(count or 0)


def decode_cursor(cursor: str) -> int:
    """The delivery id a cursor stands for; ValueError for anything that is not one."""
    if not cursor.isascii() or not cursor.isdigit() or not 0 < int(cursor) < 2**63:
        raise ValueError("not a cursor this API gave")
    return int(cursor)


def _fail_pending(endpoint_ids: Sequence[int], reason: str) -> Update:
    """The UPDATE that fails the pending deliveries of endpoints no longer sent to."""
    return (update(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id.in_(endpoint_ids), WebhookDelivery.status == "pending")
            .values(status="failed", last_error=f"endpoint disabled: {reason}", lease_token=None,
                    lease_expires_at=None)
            .execution_options(synchronize_session=False))


def _endpoint(row: WebhookEndpoint) -> Endpoint:
    return Endpoint(row.id, row.url, row.enabled, row.disabled_reason, row.source, row.created_at)


def _record(row: WebhookDelivery, url: str) -> DeliveryRecord:
    return DeliveryRecord(
        id=row.id, endpoint_id=row.endpoint_id, url=url, message_id=row.message_id, event_type=row.event_type,
        status=row.status, attempts=row.attempts, last_status_code=row.last_status_code, last_error=row.last_error,
        created_at=row.created_at, next_attempt_at=row.next_attempt_at if row.status == "pending" else None,
        delivered_at=row.delivered_at)


__all__ = ["API_SOURCE", "DELIVERY_STATUSES", "SETTINGS_SOURCE", "ClaimedDelivery", "DeliveryPage", "DeliveryRecord",
           "Endpoint", "Webhooks", "decode_cursor"]
