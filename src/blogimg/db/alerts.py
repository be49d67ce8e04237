"""The ``alerts`` table (migration 0011): every episode of every alert rule, open ones first.

An episode is one row: written ``firing`` when a rule's condition starts for a subject, closed
``resolved`` when it ends, and never changed after that, so the table is the history. While it
fires, its value and ``updated_at`` may be refreshed (the page shows the latest value; the
circuit rule reads ``updated_at`` as "some worker still sees it").

At most one row per (rule, subject) fires: a partial unique index on both engines. Opening is
``INSERT … ON CONFLICT DO NOTHING`` on that index, so when two workers evaluate at once the second
insert does nothing and is taken as "already firing" (PostgreSQL makes it wait for the first to
commit; SQLite's writers take turns). Closing names ``state = 'firing'`` in its WHERE clause,
so only one of two closers closes it. Each opening and closing writes its webhook event
(``alert.firing`` / ``alert.resolved``, db/webhooks.py) in the same transaction: the event is
sent exactly when the change commits, and its key (``alert:<id>:firing``) makes a repeat harmless.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from blogimg.db.operations_tables import Alert
from blogimg.db.table_base import utcnow
from blogimg.db.webhooks import record_event

FIRING = "firing"
RESOLVED = "resolved"
#: Most history rows one read returns.
MOST_HISTORY = 200


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One alert episode as stored."""

    id: int
    rule: str
    subject: str  #: a provider, a budget level, or '' when the rule is about the whole system
    state: str  #: "firing" or "resolved"
    value: float | None
    threshold: float | None
    message: str
    started_at: datetime
    resolved_at: datetime | None
    updated_at: datetime

    @property
    def firing(self) -> bool:
        return self.state == FIRING

    def as_event(self) -> dict[str, Any]:
        """The webhook payload's ``data`` (and the API's item): times as ISO 8601 UTC."""
        return {
            "id": self.id, "rule": self.rule, "subject": self.subject, "state": self.state,
            "value": self.value, "threshold": self.threshold, "message": self.message,
            "started_at": _iso(self.started_at), "resolved_at": _iso(self.resolved_at),
        }


@dataclass(frozen=True, slots=True)
class AlertPage:
    """Alerts newest first; ``next_cursor`` reads on past the last one (None at the end)."""

    items: list[AlertRecord]
    next_cursor: str | None


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds") + "Z"


_COLUMNS = (Alert.id, Alert.rule, Alert.subject, Alert.state, Alert.value, Alert.threshold, Alert.message,
            Alert.started_at, Alert.resolved_at, Alert.updated_at)


def _record(row: Row[Any] | Any) -> AlertRecord:
    return AlertRecord(*tuple(row))


def _firing_only() -> Any:
    return Alert.state == FIRING


async def _record_event(connection: AsyncConnection, record: AlertRecord) -> None:
    kind = "alert.firing" if record.firing else "alert.resolved"
    await record_event(connection, kind, record.as_event(), event_key=f"alert:{record.id}:{record.state}")


async def open_alert(connection: AsyncConnection, rule: str, subject: str, *, value: float | None,
                     threshold: float | None, message: str, now: datetime | None = None) -> AlertRecord | None:
    """Open a firing episode and write its ``alert.firing`` event, in the caller's transaction;
    None when (rule, subject) already fires (opened by this or another worker)."""
    now = now or utcnow()
    values = {"rule": rule, "subject": subject, "state": FIRING, "value": value, "threshold": threshold,
              "message": message, "started_at": now, "updated_at": now}
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = (dialect.insert(Alert).values(**values)
                 .on_conflict_do_nothing(index_elements=[Alert.rule, Alert.subject], index_where=_firing_only())
                 .returning(*_COLUMNS))
    row = (await connection.execute(statement)).first()
    if row is None:
        return None
    record = _record(row)
    await _record_event(connection, record)
    return record


async def resolve_alert(connection: AsyncConnection, alert_id: int, *, value: float | None, message: str,
                        now: datetime | None = None) -> AlertRecord | None:
    """Close a firing episode and write its ``alert.resolved`` event, in the caller's transaction;
    None when it was no longer firing (another worker closed it first)."""
    now = now or utcnow()
    row = (await connection.execute(
        update(Alert).where(Alert.id == alert_id, _firing_only())
        .values(state=RESOLVED, value=value, message=message, resolved_at=now, updated_at=now)
        .returning(*_COLUMNS))).first()
    if row is None:
        return None
    record = _record(row)
    await _record_event(connection, record)
    return record


async def refresh_alert(connection: AsyncConnection, alert_id: int, *, value: float | None, message: str,
                        now: datetime | None = None) -> None:
    """Note the latest value of a firing episode (a resolved one is left as it is)."""
    await connection.execute(update(Alert).where(Alert.id == alert_id, _firing_only())
                             .values(value=value, message=message, updated_at=now or utcnow()))


async def firing_alerts(connection: AsyncConnection) -> list[AlertRecord]:
    """Every firing episode, oldest first (the partial unique index holds exactly these)."""
    rows = await connection.execute(select(*_COLUMNS).where(_firing_only()).order_by(Alert.id))
    return [_record(row) for row in rows]


class Alerts:
    """Reads the alerts of one catalogue, for the CLI, the API and the status page."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def firing(self) -> list[AlertRecord]:
        async with self.engine.connect() as connection:
            return await firing_alerts(connection)

    async def history(self, *, limit: int = 50, cursor: str | None = None) -> AlertPage:
        """Episodes newest first, firing and resolved alike, ``limit`` at a time (at most MOST_HISTORY);
        ``cursor`` is a page's ``next_cursor``. A cursor that is not one raises ValueError."""
        limit = max(1, min(limit, MOST_HISTORY))
        query = select(*_COLUMNS).order_by(Alert.id.desc()).limit(limit + 1)
        if cursor is not None:
            before = int(cursor)  # ValueError for anything else: the caller says so in its own words
            if not 1 <= before <= 2**31 - 1:  # alerts.id is a 32-bit integer on PostgreSQL: beyond it, no id
                raise ValueError(cursor)
            query = query.where(Alert.id < before)
        async with self.engine.connect() as connection:
            records = [_record(row) for row in await connection.execute(query)]
        more = len(records) > limit
        records = records[:limit]
        return AlertPage(records, str(records[-1].id) if more and records else None)
