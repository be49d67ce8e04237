"""An upload cut off half-way, through the whole pipeline, on every cloud backend: the image does
not succeed, and no catalogue row points at an object the store does not hold (files are stored
before the row is written, and a failed store writes none)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from blogimg.config import Settings
from blogimg.db.database import Database
from blogimg.db.tables import GeneratedImage, ImageVariant
from blogimg.domain import Status
from blogimg.pipeline.generate import generate
from blogimg.storage import Storage
from blogimg.storage.s3 import S3Storage
from tests.contract.conftest import CLOUD_BACKENDS
from tests.fakes.moto_s3 import storage_on
from tests.support import write_posts


def _healthy(backend: str, broken: Storage, request: pytest.FixtureRequest) -> Storage:
    """The same store, read without the cut: for S3 straight to moto rather than through the
    proxy; the Vercel Blob and Cloudinary fakes cut only uploads, so the broken storage reads."""
    if backend == "s3":
        assert isinstance(broken, S3Storage)
        return storage_on(request.getfixturevalue("moto_s3_endpoint"), broken.bucket, prefix=broken.prefix)
    return broken


@pytest.mark.parametrize("backend", CLOUD_BACKENDS)
async def test_a_cut_off_upload_fails_the_image_and_leaves_no_row_pointing_at_nothing(
        backend: str, request: pytest.FixtureRequest, tmp_path: Path, settings: Settings) -> None:
    broken: Storage = request.getfixturevalue(f"broken_{backend.replace('-', '_')}_storage")
    summary = await generate([write_posts(tmp_path / "posts", 1, markers=0)], settings, providers=["card"],
                             storage=broken)
    assert summary.succeeded == 0 and summary.queued == 1

    healthy = _healthy(backend, broken, request)
    database = await Database.open(settings.database_url)
    try:
        async with database.sessions() as session:
            [(status, error_code)] = (await session.execute(
                select(GeneratedImage.status, GeneratedImage.error_code))).all()
            keys = {key for row in (await session.execute(
                select(GeneratedImage.storage_key, GeneratedImage.thumbnail_key))).all() for key in row if key}
            keys |= set(await session.scalars(select(ImageVariant.storage_key)))
    finally:
        await database.close()
    assert (status, error_code) in ((Status.FAILED, "storage"), (Status.QUEUED, None)), (status, error_code)
    missing = [key for key in sorted(keys) if not await healthy.exists(key)]
    assert missing == [], f"rows point at objects the store does not hold: {missing}"
