"""The webhook outbox: events become ``webhook_deliveries`` rows in the transaction of the change they report.

Nothing is sent here. A row is written for every enabled endpoint, in the caller's transaction
and without a commit, so an event is delivered exactly when the change commits and never for a
change that rolled back; the worker's sender (pipeline/webhook_sender.py) sends the rows later.

``image_changes`` is what the queue's one change hook (db/queue/changes.py) calls: an
``image.succeeded`` or ``image.failed`` event per finished job, and ``batch.done`` when the change
finishes the last image of a batch. That last one must be said exactly once even when two workers
finish a batch's last two images at the same moment on PostgreSQL, where each transaction would
otherwise see the other's image still running (neither says it) — so the batch row is locked
first: the second transaction waits for the first to commit, then sees its image finished. The
message id ``batch.done:<id>`` and the unique (endpoint_id, message_id) make a batch done again
later (a failed image retried in it) say nothing twice.

Payloads follow the Standard Webhooks shape ``{"type", "timestamp", "data"}``. They hold ids,
status and error code, never URLs (those are derived from storage keys when read) nor prompts.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from blogimg.db.tables import Batch, GeneratedImage, WebhookDelivery, WebhookEndpoint, utcnow
from blogimg.domain import Status

#: Every event blogimg sends.
EVENT_TYPES = ("image.succeeded", "image.failed", "batch.done", "alert.firing", "alert.resolved")
_IMAGE_EVENTS = {Status.SUCCEEDED: "image.succeeded", Status.FAILED: "image.failed"}
_UNFINISHED = (Status.QUEUED, Status.RUNNING)

Connection = AsyncSession | AsyncConnection


async def record_event(session: Connection, event_type: str, data: dict[str, Any], *,
                       event_key: str | None = None) -> None:
    """Write one outbox row per enabled endpoint in the caller's transaction (no commit).

    With ``event_key`` the message id is that key, and a second event with the same key is
    ignored (per endpoint): a repeat of a unit of work that committed unseen says nothing twice.
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    endpoints = await enabled_endpoints(session)
    if endpoints:
        await _write(session, endpoints, [(event_key or _random_id(), event_type, data)])


async def enabled_endpoints(session: Connection) -> list[int]:
    """The ids of the endpoints events are written for now."""
    return list((await session.scalars(select(WebhookEndpoint.id).where(WebhookEndpoint.enabled.is_(True))
                                       .order_by(WebhookEndpoint.id))).all())


async def image_changes(session: Connection, changed: Sequence[tuple[int, int | None]], status: Status) -> None:
    """The events of jobs that just changed to ``status``: image.succeeded/failed, and batch.done."""
    event_type = _IMAGE_EVENTS.get(status)
    if event_type is None or not changed:
        return  # queued and running are steps along the way, not news for a receiver
    endpoints = await enabled_endpoints(session)
    if not endpoints:
        return
    rows = (await session.execute(
        select(GeneratedImage.id, GeneratedImage.batch_id, GeneratedImage.post_id, GeneratedImage.prompt_id,
               GeneratedImage.error_code, GeneratedImage.provider, GeneratedImage.model,
               GeneratedImage.finished_at)
        .where(GeneratedImage.id.in_([image_id for image_id, _ in changed])).order_by(GeneratedImage.id))).all()
    events: list[tuple[str, str, dict[str, Any]]] = [
        (_random_id(), event_type, {
            "image_id": image_id, "batch_id": batch_id, "post_id": post_id, "prompt_id": prompt_id,
            "status": status.value, "error_code": error_code, "provider": provider, "model": model,
            "finished_at": _timestamp(finished_at or utcnow()),
        })
        for image_id, batch_id, post_id, prompt_id, error_code, provider, model, finished_at in rows
    ]
    for batch_id in sorted({batch_id for _, batch_id in changed if batch_id is not None}):
        done = await _batch_done(session, batch_id)
        if done is not None:
            events.append((f"batch.done:{batch_id}", "batch.done", done))
    await _write(session, endpoints, events)


async def _batch_done(session: Connection, batch_id: int) -> dict[str, Any] | None:
    """batch.done's data when no image of the batch is left to make, else None (see the module's doc).

    Every finished image asks, so it is cheap while the batch is under way: existence checks (no
    count), and finishers serialised only near the end. While an image X is still queued, the
    batch row is locked FOR SHARE, which finishers share, and so is X's row: nobody can claim or
    finish X until this transaction commits, so X's finisher sees this one's image finished, and
    it (or, in turn, the finisher of an image still queued then) says batch.done. With nothing
    queued, the lock is FOR NO KEY UPDATE: it waits for every other finisher holding either lock.
    X is looked for with SKIP LOCKED: a queued row that a concurrent transaction is changing (maybe
    finishing it) is not one to count on, and a plain read would still see it queued. (Skipping
    the lock altogether while an image is queued would not do: X could be claimed and finished by
    a transaction that sees this one's image still running before this one commits.)
    """
    under_way = await session.scalar(
        select(GeneratedImage.id).where(GeneratedImage.batch_id == batch_id, GeneratedImage.status == Status.QUEUED)
        .limit(1).with_for_update(read=True, skip_locked=True)) is not None
    # Locked, then read in statements of their own: on PostgreSQL (read committed) they see every
    # change committed by a transaction that held a conflicting lock before us. FOR NO KEY UPDATE
    # (key_share) rather than FOR UPDATE: rows that merely refer to the batch are not held up.
    lock = select(Batch.id).where(Batch.id == batch_id)
    lock = lock.with_for_update(read=True) if under_way else lock.with_for_update(key_share=True)
    if await session.scalar(lock) is None or await _any_image(session, batch_id, _UNFINISHED):
        return None
    counts: dict[Status, int] = {status: count for status, count in (await session.execute(
        select(GeneratedImage.status, func.count()).where(GeneratedImage.batch_id == batch_id)
        .group_by(GeneratedImage.status))).all()}
    return {"batch_id": batch_id, "succeeded": counts.get(Status.SUCCEEDED, 0),
            "failed": counts.get(Status.FAILED, 0), "finished_at": _timestamp(utcnow())}


async def _any_image(session: Connection, batch_id: int, statuses: Sequence[Status]) -> bool:
    return await session.scalar(select(GeneratedImage.id).where(
        GeneratedImage.batch_id == batch_id, GeneratedImage.status.in_(statuses)).limit(1)) is not None


async def _write(session: Connection, endpoints: Sequence[int],
                 events: Sequence[tuple[str, str, dict[str, Any]]]) -> None:
    if not events:
        return
    now = utcnow()
    rows = [
        {"endpoint_id": endpoint_id, "message_id": message_id, "event_type": event_type,
         "payload": _body(event_type, data, now), "status": "pending", "attempts": 0,
         "next_attempt_at": now, "created_at": now}
        for message_id, event_type, data in events for endpoint_id in endpoints
    ]
    dialect = _dialect_name(session)
    statement = (postgresql.insert(WebhookDelivery) if dialect == "postgresql" else sqlite.insert(WebhookDelivery))
    await session.execute(statement.on_conflict_do_nothing(index_elements=["endpoint_id", "message_id"]), rows)


def _dialect_name(session: Connection) -> str:
    if isinstance(session, AsyncConnection):
        return session.dialect.name
    return session.get_bind().dialect.name


def _body(event_type: str, data: dict[str, Any], now: datetime) -> str:
    # Compact and stable: these exact bytes are signed on every attempt.
    return json.dumps({"type": event_type, "timestamp": _timestamp(now), "data": data},
                      separators=(",", ":"), sort_keys=True)


def _timestamp(moment: datetime) -> str:
    return moment.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")


def _random_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


__all__ = ["EVENT_TYPES", "enabled_endpoints", "image_changes", "record_event"]
