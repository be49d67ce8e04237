"""/healthz and /metrics (Prometheus text format, read from the catalogue so every node agrees)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter
from fastapi.responses import Response

from blogimg.api.deps import DatabaseDep, StateDep
from blogimg.api.errors import errors
from blogimg.api.metrics import CONTENT_TYPE, render
from blogimg.api.schemas import Health
from blogimg.db.metrics_snapshot import Limits, read_snapshot
from blogimg.pipeline.circuit_reports import FRESH_SECONDS

router = APIRouter(tags=["service"])


@router.get("/healthz", response_model=Health, responses=errors(503))
async def health(database: DatabaseDep) -> Health:
    """200 when the database answers."""
    await database.ping()
    return Health(status="ok", database="ok")


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus"}})
async def metrics(database: DatabaseDep, state: StateDep) -> Response:
    """Every series in the Prometheus text format (api/metrics.py), read from the catalogue now."""
    settings = state.settings
    snapshot = await read_snapshot(database.engine, timedelta(seconds=FRESH_SECONDS), Limits(
        settings.budget_daily_usd, settings.budget_monthly_usd, settings.storage_limit_bytes))
    return Response(render(snapshot), media_type=CONTENT_TYPE)
