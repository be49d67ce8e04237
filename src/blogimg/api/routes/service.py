"""/healthz and /metrics (Prometheus text format, read from the catalogue so every node agrees)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from blogimg.api.deps import DatabaseDep, ReportingDep
from blogimg.api.errors import errors
from blogimg.api.schemas import Health

router = APIRouter(tags=["service"])


@router.get("/healthz", response_model=Health, responses=errors(503))
async def health(database: DatabaseDep) -> Health:
    """200 when the database answers."""
    await database.ping()
    return Health(status="ok", database="ok")


@router.get("/metrics", response_class=PlainTextResponse,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus"}})
async def metrics(reporting: ReportingDep) -> PlainTextResponse:
    by_status = await reporting.status_counts()
    calls = await reporting.provider_calls(by_outcome=True)
    lines = ["# HELP blogimg_images Images by status.", "# TYPE blogimg_images gauge"]
    lines += [f'blogimg_images{{status="{status}"}} {count}' for status, count in by_status.items()]
    lines += ["# HELP blogimg_provider_calls_total Provider calls by outcome.",
              "# TYPE blogimg_provider_calls_total counter"]
    lines += [f'blogimg_provider_calls_total{{provider="{_label(row.provider)}",outcome="{row.outcome}"}} {row.calls}'
              for row in calls]
    lines += ["# HELP blogimg_provider_cost_usd_total Known cost of provider calls.",
              "# TYPE blogimg_provider_cost_usd_total counter"]
    lines += [f'blogimg_provider_cost_usd_total{{provider="{_label(row.provider)}",outcome="{row.outcome}"}} '
              f'{row.cost_usd:.6f}' for row in calls]
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
