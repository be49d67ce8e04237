"""/api/batches/{id}: how a batch is doing and what it has cost so far."""

from __future__ import annotations

from fastapi import APIRouter

from blogimg.api.routes.common import CatalogDep, errors
from blogimg.api.schemas import BatchOut
from blogimg.errors import NotFoundError

router = APIRouter(prefix="/api/batches", tags=["batches"])


@router.get("/{batch_id}", response_model=BatchOut, responses=errors(404, 422))
async def read_batch(batch_id: int, catalog: CatalogDep) -> BatchOut:
    found = await catalog.batch(batch_id) if 0 < batch_id < 2**31 else None
    if found is None:
        raise NotFoundError(f"no batch with id {batch_id}")
    return BatchOut(**found)
