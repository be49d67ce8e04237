"""/api/batches/{id}: how a batch is doing and what it has cost so far."""

from __future__ import annotations

from fastapi import APIRouter

from blogimg.api.deps import ReportingDep
from blogimg.api.errors import errors
from blogimg.api.schemas import BatchCounts, BatchOut
from blogimg.errors import NotFoundError

router = APIRouter(prefix="/api/batches", tags=["batches"])


@router.get("/{batch_id}", response_model=BatchOut, responses=errors(404, 422))
async def read_batch(batch_id: int, reporting: ReportingDep) -> BatchOut:
    progress = await reporting.batch_progress(batch_id) if 0 < batch_id < 2**31 else None
    if progress is None:
        raise NotFoundError(f"no batch with id {batch_id}")
    return BatchOut(id=progress.id, done=progress.done, counts=BatchCounts(**progress.counts),
                    cost_usd=progress.cost_usd, image_ids=progress.image_ids)
