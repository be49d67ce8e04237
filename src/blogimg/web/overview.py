"""The overview at ``/``: alerts firing, batches at work, counts, spending against the budgets, provider health, charts.

Every number comes from reporting's rollups (db/reporting.py) or an indexed read
(db/batch_status.py), never a scan, so a page that refreshes on every change stays cheap at a
million images. Circuit states live in this process's worker (its provider chain), so they are
known only when ``serve`` runs the embedded worker; otherwise they read "unknown".
"""

from __future__ import annotations

import calendar
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from blogimg.api.deps import api_state, database
from blogimg.db.alerts import AlertRecord, Alerts
from blogimg.db.batch_status import BatchStatus, BatchStatusReader
from blogimg.domain import Status
from blogimg.web.templating import latest_event_id, render

router = APIRouter(include_in_schema=False)
SERIES_DAYS = 30
HEALTH_DAYS = 7
UNKNOWN_CIRCUIT = "unknown"


@dataclass(frozen=True, slots=True)
class Spend:
    """Spending in one budget period against its cap (None: no budget set)."""

    label: str
    spent_usd: float
    budget_usd: float | None

    @property
    def share(self) -> float | None:
        if self.budget_usd is None or self.budget_usd <= 0:
            return None
        return self.spent_usd / self.budget_usd


@dataclass(frozen=True, slots=True)
class ProviderCard:
    """One provider's health over the last days, and its circuit in this process."""

    name: str
    health: Any | None  #: reporting's ProviderHealth; None when it made no call lately
    circuit: str  #: closed, open, half-open, paused, or unknown without a worker here


async def batches(request: Request) -> list[BatchStatus]:
    return await BatchStatusReader((await database(request)).sessions).in_progress()


async def numbers(request: Request) -> dict[str, Any]:
    """What the live part of the overview shows (everything but the charts)."""
    reporting = (await database(request)).reporting
    settings = api_state(request).settings
    totals = await reporting.status_totals()
    costs = await reporting.cost_totals()
    health = {row.provider: row for row in await reporting.provider_health(days=HEALTH_DAYS)}
    circuits = circuit_states(request)
    names = list(circuits or {}) + sorted(set(health) - set(circuits or {}))
    return {
        "batches": await batches(request),
        "totals": [(status, totals.get(status, 0)) for status in Status],
        "total_images": sum(totals.values()),
        "spending": [Spend("Today", costs.today_usd, settings.budget_daily_usd),
                     Spend(calendar.month_name[datetime.now(UTC).month], costs.month_usd, settings.budget_monthly_usd)],
        "providers": [ProviderCard(name, health.get(name), (circuits or {}).get(name, UNKNOWN_CIRCUIT))
                      for name in names],
        "health_days": HEALTH_DAYS,
        "worker_here": circuits is not None,
    }


def circuit_states(request: Request) -> dict[str, str] | None:
    """Each provider's circuit in this process's worker, in fallback order; None without a worker."""
    state = api_state(request)
    chain = state.runtime.chain if state.with_worker and state.runtime is not None else None
    if chain is None:
        return None
    return {name: "paused" if name in chain.paused else breaker.state.value
            for name, breaker in chain.breakers.items()}


async def chart_series(request: Request) -> str:
    """The last days' images, cost and latency as JSON for static/charts.js (x: UTC midnight, seconds)."""
    rows = await (await database(request)).reporting.series(days=SERIES_DAYS)
    series: dict[str, list[Any]] = {"day": [], "succeeded": [], "failed": [], "cost": [], "p50": [], "p95": []}
    for row in rows:
        series["day"].append(_epoch(row.day))
        series["succeeded"].append(row.succeeded)
        series["failed"].append(row.failed)
        series["cost"].append(round(row.cost_usd, 6))
        series["p50"].append(row.latency_p50_ms)
        series["p95"].append(row.latency_p95_ms)
    # In a <script type="application/json">: "</" must not end the element early.
    return json.dumps(series, separators=(",", ":")).replace("</", "<\\/")


def _epoch(day: date | datetime | str) -> int:
    if isinstance(day, str):
        day = date.fromisoformat(day[:10])
    if isinstance(day, datetime):
        day = day.date()
    return calendar.timegm(day.timetuple())


EventId = Annotated[int, Depends(latest_event_id)]


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request, last_event_id: EventId) -> HTMLResponse:
    context = {**await numbers(request), "series": await chart_series(request), "last_event_id": last_event_id,
               "alerts": await firing_alerts(request)}
    return render(request, "overview.html", context)


async def firing_alerts(request: Request) -> list[AlertRecord]:
    """Alerts firing now, oldest first (the workers evaluate the rules: pipeline/alerting.py)."""
    return await Alerts((await database(request)).engine).firing()


@router.get("/overview/alerts", response_class=HTMLResponse)
async def overview_alerts(request: Request) -> HTMLResponse:
    """The alerts panel, fetched again by htmx on every change and every few seconds."""
    return render(request, "partials/overview_alerts.html", {"alerts": await firing_alerts(request)})


@router.get("/overview/live", response_class=HTMLResponse)
async def overview_live(request: Request) -> HTMLResponse:
    """The overview's numbers, fetched again by htmx on every change (at most once a second)."""
    return render(request, "partials/overview_live.html", await numbers(request))


@router.get("/overview/series", response_class=HTMLResponse)
async def overview_series(request: Request) -> HTMLResponse:
    """The charts' data, fetched again by htmx on every change; charts.js redraws from it."""
    return render(request, "partials/overview_series.html", {"series": await chart_series(request)})
