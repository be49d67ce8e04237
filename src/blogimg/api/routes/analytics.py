"""/api/analytics: spend by day, month or provider, cost per accepted image, regeneration rate,
storage by format and ratings per provider and model (db/analytics.py says what each costs)."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from blogimg.api.deps import DatabaseDep
from blogimg.api.errors import errors
from blogimg.db.analytics import Analytics

router = APIRouter(prefix="/api/analytics", tags=["analytics"])


class SpendOut(BaseModel):
    key: str = Field(description="'YYYY-MM-DD', 'YYYY-MM' or a provider's name; 'total' for the sum")
    calls: int
    ok_calls: int
    cost_usd: float = Field(description="Known costs of the calls (failed ones too)")
    unknown_cost_calls: int
    accepted_images: int = Field(description="Images that succeeded")
    failed_images: int
    cost_per_accepted_image: float | None
    calls_per_accepted_image: float | None
    regeneration_rate: float | None = Field(
        description="(ok calls − accepted images) / accepted images: images made again, per accepted image")


class FormatStorageOut(BaseModel):
    role: Literal["master", "variant"]
    format: str
    files: int
    bytes_stored: int
    bytes_original: int | None = Field(description="Masters: the bytes the provider sent")
    bytes_saved: int | None = Field(description="Masters: original − stored")


class RatingOut(BaseModel):
    provider: str
    model: str
    rated_images: int
    mean_rating: float
    counts: dict[int, int] = Field(description="rating (1–5) → images")


class AnalyticsOut(BaseModel):
    grouping: Literal["day", "month", "provider"]
    since: str | None = Field(description="The first UTC day counted; null for all time")
    rows: list[SpendOut]
    total: SpendOut
    storage: list[FormatStorageOut]
    ratings: list[RatingOut]


@router.get("", response_model=AnalyticsOut, responses=errors(422))
async def analytics(
    database: DatabaseDep,
    by: Literal["day", "month", "provider"] = "day",
    days: Annotated[int | None, Query(ge=1, le=36_500, description="Only the last N UTC days (default: all)")] = None,
) -> AnalyticsOut:
    """Spend and images by day, month or provider (from the daily rollups); storage by format and
    ratings per provider and model (one aggregate scan each)."""
    report = await Analytics(database.engine).report(by, days)
    return AnalyticsOut(**dataclasses.asdict(report))
