"""/healthz and /metrics (Prometheus text format, read from the catalogue so every node agrees)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from sqlalchemy import func, select, text

from blogimg.api.routes.common import State, errors
from blogimg.api.schemas import Health
from blogimg.db.tables import GeneratedImage, GenerationAttempt

router = APIRouter(tags=["service"])


@router.get("/healthz", response_model=Health, responses=errors(503))
async def health(state: State) -> Health:
    """200 when the database answers."""
    async with state.repository.sessions() as session:  # type: ignore[union-attr]
        await session.execute(text("SELECT 1"))
    return Health(status="ok", database="ok")


@router.get("/metrics", response_class=PlainTextResponse,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus"}})
async def metrics(state: State) -> PlainTextResponse:
    async with state.repository.sessions() as session:  # type: ignore[union-attr]
        by_status = (await session.execute(
            select(GeneratedImage.status, func.count()).group_by(GeneratedImage.status))).all()
        calls = (await session.execute(
            select(GenerationAttempt.provider, GenerationAttempt.outcome, func.count(),
                   func.coalesce(func.sum(GenerationAttempt.cost_usd), 0.0))
            .group_by(GenerationAttempt.provider, GenerationAttempt.outcome))).all()
    lines = ["# HELP blogimg_images Images by status.", "# TYPE blogimg_images gauge"]
    lines += [f'blogimg_images{{status="{status}"}} {count}' for status, count in by_status]
    lines += ["# HELP blogimg_provider_calls_total Provider calls by outcome.",
              "# TYPE blogimg_provider_calls_total counter"]
    lines += [f'blogimg_provider_calls_total{{provider="{_label(p)}",outcome="{o}"}} {n}' for p, o, n, _ in calls]
    lines += ["# HELP blogimg_provider_cost_usd_total Known cost of provider calls.",
              "# TYPE blogimg_provider_cost_usd_total counter"]
    lines += [f'blogimg_provider_cost_usd_total{{provider="{_label(p)}",outcome="{o}"}} {float(c):.6f}'
              for p, o, _, c in calls]
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
