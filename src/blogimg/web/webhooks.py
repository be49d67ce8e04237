"""The webhooks view at ``/webhooks``: the endpoints and the delivery log, newest first.

The same rows as ``GET /api/webhooks`` and ``GET /api/webhooks/deliveries`` (db/webhook_deliveries.py);
the status filter and the page's cursor live in the URL. Endpoints are added and removed through
the API; this view only shows what happens to them. As in the API, a URL's path and query (often a
receiver's token) are shown to full keys only.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from blogimg.api.deps import database
from blogimg.api.routes.webhooks import shows_whole_urls
from blogimg.db.webhook_deliveries import DELIVERY_STATUSES, decode_cursor
from blogimg.pipeline.webhook_endpoints import masked_url
from blogimg.web.templating import render, status_for

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50


@router.get("/webhooks", response_class=HTMLResponse)
async def webhooks_page(request: Request) -> HTMLResponse:
    problems: list[str] = []
    status = request.query_params.get("status") or None
    if status is not None and status not in DELIVERY_STATUSES:
        problems.append(f"status: one of {', '.join(DELIVERY_STATUSES)}")
        status = None
    cursor = request.query_params.get("cursor") or None
    if cursor is not None:
        try:
            decode_cursor(cursor)
        except ValueError:
            problems.append("cursor: not one this page gave")
            cursor = None
    webhooks = (await database(request)).webhooks
    page = await webhooks.log(status=status, cursor=cursor, limit=PAGE_SIZE)
    older = ("/webhooks?" + urlencode({name: value for name, value in (("status", status),
                                                                       ("cursor", page.next_cursor)) if value})
             if page.next_cursor else None)
    endpoints = await webhooks.endpoints()
    if not shows_whole_urls(request):
        endpoints = [dataclasses.replace(endpoint, url=masked_url(endpoint.url)) for endpoint in endpoints]
    context = {"endpoints": endpoints, "deliveries": page.items, "status": status,
               "statuses": DELIVERY_STATUSES, "older_url": older, "problems": problems}
    return render(request, "webhooks.html", context, status_code=status_for(request, problems))
