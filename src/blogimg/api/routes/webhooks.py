"""/api/webhooks: endpoints (list, add, enable or disable, delete) and the delivery log.

An endpoint's URL must pass the public-address policy (pipeline/webhook_endpoints.py): a private
one is 422. A secret is never shown, except once: in the answer that made it, when the server
generated it. Endpoints from BLOGIMG_WEBHOOK_URLS can be disabled here but not deleted (the next
start would add them again): their place is the settings.

A receiver's URL often carries a token in its path or query: only a full key sees URLs whole;
a read-only key sees ``scheme://host[:port]/…`` (pipeline/webhook_endpoints.py's masked_url).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from blogimg.api.auth import Role, request_role
from blogimg.api.deps import DatabaseDep, StateDep
from blogimg.api.errors import ApiError, errors
from blogimg.api.routes.common import utc
from blogimg.db.webhook_deliveries import SETTINGS_SOURCE, DeliveryRecord, Endpoint, decode_cursor
from blogimg.errors import ConflictError
from blogimg.pipeline.webhook_endpoints import LONGEST_URL, endpoint_refusal, masked_url
from blogimg.pipeline.webhook_signing import new_secret, secret_key

router = APIRouter(prefix="/api/webhooks", tags=["webhooks"])
DeliveryStatus = Literal["pending", "delivered", "failed"]
_STATUSES: dict[str, DeliveryStatus] = {"pending": "pending", "delivered": "delivered", "failed": "failed"}


class EndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=LONGEST_URL, description="http(s) URL at a public address")
    secret: str | None = Field(None, max_length=200, description="'whsec_' and base64; generated when absent")


class EndpointUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool


class EndpointOut(BaseModel):
    id: int
    url: str
    enabled: bool
    disabled_reason: str | None
    source: Literal["settings", "api"]
    created_at: datetime


class EndpointCreated(EndpointOut):
    secret: str | None = Field(None, description="The generated secret, shown this once; null when you gave one")


class EndpointList(BaseModel):
    items: list[EndpointOut]
    next_cursor: str | None = None


class DeliveryOut(BaseModel):
    id: int
    endpoint_id: int
    url: str
    message_id: str = Field(description="The webhook-id header: the same on every attempt")
    event_type: str
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime | None
    delivered_at: datetime | None


class DeliveryList(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None


@router.get("", response_model=EndpointList)
async def list_endpoints(request: Request, database: DatabaseDep) -> EndpointList:
    """Every endpoint, enabled or not; secrets are never shown, nor URLs' paths to a read-only key."""
    whole = shows_whole_urls(request)
    return EndpointList(items=[_endpoint_out(item, whole_url=whole) for item in await database.webhooks.endpoints()])


@router.post("", status_code=201, response_model=EndpointCreated, responses=errors(401, 403, 409, 422))
async def add_endpoint(body: EndpointIn, database: DatabaseDep, state: StateDep) -> EndpointCreated:
    """Send every event to ``url`` from now on; 422 for a URL at a private address."""
    if body.secret is not None:
        try:
            secret_key(body.secret)
        except ValueError as error:
            raise ApiError(422, "validation", f"secret: {error}") from None
    reason = await endpoint_refusal(body.url, allow_loopback=state.settings.webhook_allow_loopback)
    if reason:
        raise ApiError(422, "validation", reason)
    secret = body.secret or new_secret()
    try:
        endpoint = await database.webhooks.add(body.url, secret)
    except ConflictError as error:
        raise ApiError(409, "conflict", str(error)) from None
    return EndpointCreated(**_endpoint_out(endpoint).model_dump(), secret=None if body.secret else secret)


@router.get("/deliveries", response_model=DeliveryList, responses=errors(422))
async def deliveries(
    request: Request,
    database: DatabaseDep,
    endpoint_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    status: DeliveryStatus | None = None,
    cursor: Annotated[str | None, Query(max_length=20)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> DeliveryList:
    """The delivery log, newest first: status, attempts, the last answer and error, times."""
    if cursor is not None:
        try:
            decode_cursor(cursor)
        except ValueError as error:
            raise ApiError(422, "validation", f"cursor: {error}") from None
    page = await database.webhooks.log(endpoint_id=endpoint_id, status=status, cursor=cursor, limit=limit)
    whole = shows_whole_urls(request)
    return DeliveryList(items=[delivery_out(item, whole_url=whole) for item in page.items],
                        next_cursor=page.next_cursor)


@router.patch("/{endpoint_id}", response_model=EndpointOut, responses=errors(401, 403, 404, 422))
async def update_endpoint(endpoint_id: Annotated[int, Path(ge=1, le=2**31 - 1)], body: EndpointUpdate, database: DatabaseDep) -> EndpointOut:
    """Enable or disable an endpoint; disabling fails its pending deliveries."""
    webhooks = database.webhooks
    found = await (webhooks.enable(endpoint_id) if body.enabled else webhooks.disable(endpoint_id, "disabled through the API"))
    endpoint = await webhooks.endpoint(endpoint_id) if found else None
    if endpoint is None:
        raise ApiError(404, "not_found", f"no webhook endpoint {endpoint_id}")
    return _endpoint_out(endpoint)


@router.delete("/{endpoint_id}", status_code=204, responses=errors(401, 403, 404, 409, 422))
async def delete_endpoint(endpoint_id: Annotated[int, Path(ge=1, le=2**31 - 1)], database: DatabaseDep) -> Response:
    """Delete an endpoint added through the API, with its delivery log."""
    endpoint = await database.webhooks.endpoint(endpoint_id)
    if endpoint is None:
        raise ApiError(404, "not_found", f"no webhook endpoint {endpoint_id}")
    if endpoint.source == SETTINGS_SOURCE:
        raise ApiError(409, "conflict", "this endpoint comes from BLOGIMG_WEBHOOK_URLS: remove it there, "
                                        "or disable it here")
    await database.webhooks.delete(endpoint_id)
    return Response(status_code=204)


def shows_whole_urls(request: Request) -> bool:
    """Whether the caller may see endpoints' URLs whole: a full key (or no keys configured)."""
    return request_role(request) is Role.FULL


def _endpoint_out(endpoint: Endpoint, *, whole_url: bool = True) -> EndpointOut:
    return EndpointOut(id=endpoint.id, url=endpoint.url if whole_url else masked_url(endpoint.url),
                       enabled=endpoint.enabled,
                       disabled_reason=endpoint.disabled_reason,
                       source="settings" if endpoint.source == SETTINGS_SOURCE else "api",
                       created_at=utc(endpoint.created_at))


def delivery_out(item: DeliveryRecord, *, whole_url: bool) -> DeliveryOut:
    """One row of the log as the API's JSON (the page's view renders the same rows)."""
    return DeliveryOut(
        id=item.id, endpoint_id=item.endpoint_id, url=item.url if whole_url else masked_url(item.url),
        message_id=item.message_id,
        event_type=item.event_type, status=_STATUSES.get(item.status, "failed"),
        attempts=item.attempts, last_status_code=item.last_status_code, last_error=item.last_error,
        created_at=utc(item.created_at),
        next_attempt_at=utc(item.next_attempt_at) if item.next_attempt_at else None,
        delivered_at=utc(item.delivered_at) if item.delivered_at else None)
