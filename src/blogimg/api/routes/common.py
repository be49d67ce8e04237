"""What every route module shares: the state, the key check, error docs, and image shaping."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Header, Request

from blogimg.api.app import ApiState, check_key
from blogimg.api.schemas import ErrorBody, ImageOut
from blogimg.db.catalog import Catalog, ImageWithVariants


async def api_state(request: Request) -> ApiState:
    return await request.app.state.api.open()


async def catalog(request: Request) -> Catalog:
    state = await api_state(request)
    assert state.catalog is not None
    return state.catalog


async def authorized(request: Request,
                     authorization: Annotated[str | None, Header(description="Bearer <API key>")] = None) -> None:
    """Mutating routes depend on this: 401 unless keys are off or a valid one is given."""
    check_key(request.app.state.api, authorization)


State = Annotated[ApiState, Depends(api_state)]
CatalogDep = Annotated[Catalog, Depends(catalog)]
Authorized = Depends(authorized)


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for our error body at each status (422 replaces FastAPI's own shape)."""
    text = {401: "No valid API key", 404: "Unknown id", 409: "Not possible in the current state",
            413: "Request body too large", 422: "Invalid request", 503: "A backing service failed"}
    return {status: {"model": ErrorBody, "description": text.get(status, "Error")} for status in statuses}


MUTATING = errors(401, 413, 422)


def image_out(item: ImageWithVariants) -> ImageOut:
    image = item.image
    focal = {"x": image.focal_x, "y": image.focal_y} if image.focal_x is not None and image.focal_y is not None else None
    return ImageOut(
        id=image.id, status=image.status, prompt_id=image.prompt_id, post_id=image.post_id, batch_id=image.batch_id,
        prompt=item.prompt, url=image.url, thumbnail_url=image.thumbnail_url,
        variants=[{"format": v.format, "width": v.width, "height": v.height, "url": v.url, "bytes": v.bytes}
                  for v in item.variants],
        alt_text=image.alt_text, provider=image.provider, model=image.model, cost_usd=image.cost_usd,
        latency_ms=image.latency_ms, width=image.width, height=image.height, format=image.format,
        bytes_original=image.bytes_original, bytes_stored=image.bytes_stored, lqip=image.lqip,
        dominant_color=image.dominant_color, revised_prompt=image.revised_prompt, focal_point=focal,
        rating=image.rating, tags=list(image.tags or []), error_code=image.error_code,
        error_message=image.error_message, created_at=_utc(image.created_at), updated_at=_utc(image.updated_at),
    )


def _utc(moment: datetime) -> datetime:
    # The catalogue stores naive UTC; the API says so (RFC 3339 needs the offset).
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
