"""/api/alerts: the alerts firing now and their history (pipeline/alerting.py evaluates the rules)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from blogimg.api.deps import DatabaseDep
from blogimg.api.errors import ApiError, errors
from blogimg.db.alerts import MOST_HISTORY, AlertRecord, Alerts

router = APIRouter(prefix="/api/alerts", tags=["alerts"])


class AlertOut(BaseModel):
    """One episode of a rule for one subject: opened firing, closed resolved, never changed after."""

    id: int
    rule: str = Field(description="failure_rate, budget_daily, budget_monthly, storage, processing_p95, "
                                  "provider_latency_p95, circuit_open or queued_too_long")
    subject: str = Field(description="A provider, a budget level ('80%'), or '' for the whole system")
    state: str = Field(description="firing or resolved")
    value: float | None = Field(description="What the rule measured (last seen while firing, or when resolved)")
    threshold: float | None
    message: str
    started_at: datetime
    resolved_at: datetime | None


class AlertsOut(BaseModel):
    firing: list[AlertOut] = Field(description="Every alert firing now, oldest first")
    items: list[AlertOut] = Field(description="History, newest first, firing and resolved alike")
    next_cursor: str | None


def alert_out(record: AlertRecord) -> AlertOut:
    return AlertOut(id=record.id, rule=record.rule, subject=record.subject, state=record.state, value=record.value,
                    threshold=record.threshold, message=record.message, started_at=record.started_at,
                    resolved_at=record.resolved_at)


@router.get("", response_model=AlertsOut, responses=errors(422))
async def list_alerts(
    database: DatabaseDep,
    limit: Annotated[int, Query(ge=1, le=MOST_HISTORY)] = 50,
    cursor: Annotated[str | None, Query(max_length=20, pattern=r"^[0-9]+$")] = None,
) -> AlertsOut:
    """The firing alerts, and the history newest first; pass ``next_cursor`` back as ``cursor`` for more."""
    alerts = Alerts(database.engine)
    try:
        page = await alerts.history(limit=limit, cursor=cursor)
    except ValueError:
        raise ApiError(422, "validation", "cursor: not a cursor this list gave") from None
    return AlertsOut(firing=[alert_out(record) for record in await alerts.firing()],
                     items=[alert_out(record) for record in page.items], next_cursor=page.next_cursor)
