"""The two servers of bench/api.py, each built by uvicorn's ``--factory`` from BLOGIMG_DATABASE_URL.

- ``blogimg``: the real app from create_app (FastAPI, validation, middleware, the catalogue).
- ``minimal``: a bare Starlette route running the same statements (the page of images by keyset,
  their variants, their prompts) with SQLAlchemy Core on the same engine, answering the same
  fields as JSON. It is what the endpoint would cost with no framework in the way.
"""

from __future__ import annotations

import os
from collections import defaultdict
from datetime import UTC

from sqlalchemy import select, tuple_
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from blogimg.db.catalog import decode_cursor, encode_cursor
from blogimg.db.engine import create_engine
from blogimg.db.tables import GeneratedImage, ImagePromptRow, ImageVariant

# The fields the API's ImageOut answers with.
_IMAGE_COLUMNS = [getattr(GeneratedImage, name) for name in (
    "id", "status", "prompt_id", "post_id", "batch_id", "storage_key", "thumbnail_key", "alt_text", "provider", "model",
    "cost_usd", "latency_ms", "width", "height", "format", "bytes_original", "bytes_stored", "lqip",
    "dominant_color", "revised_prompt", "focal_x", "focal_y", "rating", "tags", "error_code", "error_message",
    "created_at", "updated_at")]


def blogimg():  # type: ignore[no-untyped-def]
    from blogimg.api.app import create_app
    from blogimg.config import Settings

    return create_app(Settings(), run_worker=False)


def _url(key: str | None) -> str | None:
    return f"/files/{key}" if key else None


def minimal() -> Starlette:
    engine = create_engine(os.environ["BLOGIMG_DATABASE_URL"])

    async def search(request: Request) -> JSONResponse:
        limit = min(100, int(request.query_params.get("limit", 20)))
        query = select(*_IMAGE_COLUMNS)
        if cursor := request.query_params.get("cursor"):
            stamp, last_id = decode_cursor(cursor)
            query = query.where(tuple_(GeneratedImage.created_at, GeneratedImage.id) < tuple_(stamp, last_id))
        query = query.order_by(GeneratedImage.created_at.desc(), GeneratedImage.id.desc()).limit(limit + 1)
        async with engine.connect() as connection:
            rows = (await connection.execute(query)).mappings().all()
            more, rows = len(rows) > limit, rows[:limit]
            ids = [row["id"] for row in rows]
            variants: dict[int, list[dict]] = defaultdict(list)
            for variant in (await connection.execute(
                    select(ImageVariant.image_id, ImageVariant.format, ImageVariant.width, ImageVariant.height,
                           ImageVariant.storage_key, ImageVariant.bytes)
                    .where(ImageVariant.image_id.in_(ids)).order_by(ImageVariant.format, ImageVariant.width))).mappings():
                shown = {k: v for k, v in variant.items() if k not in ("image_id", "storage_key")}
                variants[variant["image_id"]].append(shown | {"url": _url(variant["storage_key"])})
            prompts = dict((await connection.execute(
                select(ImagePromptRow.id, ImagePromptRow.prompt)
                .where(ImagePromptRow.id.in_({row["prompt_id"] for row in rows})))).all())
        items = []
        for row in rows:
            item = {k: v for k, v in row.items() if k not in ("storage_key", "thumbnail_key")}
            # URLs follow from the keys when read, as the API derives them.
            item["url"], item["thumbnail_url"] = _url(row["storage_key"]), _url(row["thumbnail_key"])
            item["created_at"] = row["created_at"].replace(tzinfo=UTC).isoformat()
            item["updated_at"] = row["updated_at"].replace(tzinfo=UTC).isoformat()
            item["prompt"] = prompts.get(row["prompt_id"], "")
            item["variants"] = variants[row["id"]]
            items.append(item)
        last = rows[-1] if more and rows else None
        return JSONResponse({"items": items,
                             "next_cursor": encode_cursor(last["created_at"], last["id"]) if last else None})

    return Starlette(routes=[Route("/api/images/search", search)])
