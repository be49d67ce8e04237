"""Shaping catalogue rows into the API's JSON: images (URLs derived from keys when read), times in UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

from blogimg.api.schemas import FocalPoint, ImageOut, VariantOut
from blogimg.db.catalog import ImageWithVariants
from blogimg.domain import PromptKind, Status
from blogimg.imaging.c2pa_manifest import ManifestState
from blogimg.storage.base import Storage
from blogimg.web.picture import PictureVariant, picture_markup


def image_out(item: ImageWithVariants, storage: Storage) -> ImageOut:
    image = item.image
    focal = (FocalPoint(x=image.focal_x, y=image.focal_y)
             if image.focal_x is not None and image.focal_y is not None else None)
    return ImageOut(
        id=image.id, status=image.status, prompt_id=image.prompt_id, post_id=image.post_id, batch_id=image.batch_id,
        prompt=item.prompt, kind=item.kind, position=item.position,
        url=_url(storage, image.storage_key), thumbnail_url=_url(storage, image.thumbnail_key),
        variants=[VariantOut(format=v.format, width=v.width, height=v.height, url=storage.url(v.storage_key),
                             bytes=v.bytes, quality=v.quality, score=v.score, encoder=v.encoder)
                  for v in item.variants],
        alt_text=image.alt_text, provider=image.provider, model=image.model, cost_usd=image.cost_usd,
        latency_ms=image.latency_ms, width=image.width, height=image.height, format=image.format,
        bytes_original=image.bytes_original, bytes_stored=image.bytes_stored, lqip=image.lqip,
        dominant_color=image.dominant_color, revised_prompt=image.revised_prompt, focal_point=focal,
        rating=image.rating, tags=list(image.tags or []), error_code=image.error_code,
        error_message=image.error_message, created_at=utc(image.created_at), updated_at=utc(image.updated_at),
        c2pa_manifest=cast(ManifestState, image.c2pa_manifest or "none"), c2pa_detail=image.c2pa_detail,
        master_quality=image.master_quality, master_score=image.master_score, master_encoder=image.master_encoder,
        markup=image_markup(item, storage),
    )


def image_markup(item: ImageWithVariants, storage: Storage) -> str | None:
    """The ``<picture>`` of a succeeded image (web/picture.py, as the image page shows); None otherwise."""
    image = item.image
    if image.status != Status.SUCCEEDED:
        return None
    variants = [PictureVariant(v.format, v.width, v.height, storage.url(v.storage_key)) for v in item.variants]
    return picture_markup(variants, alt=image.alt_text, lqip=image.lqip,
                          eager=item.kind == PromptKind.COVER) or None


def utc(moment: datetime) -> datetime:
    # The catalogue stores naive UTC; the API says so (RFC 3339 needs the offset).
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def naive_utc(moment: datetime | None) -> datetime | None:
    """The catalogue's naive UTC; an offset that pushes past year 1 or 9999 clamps to the end."""
    if moment is None or moment.tzinfo is None:
        return moment
    try:
        return moment.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:  # found by schemathesis: 0001-01-01T00:00+00:01
        return datetime.min if moment.year == 1 else datetime.max


def _url(storage: Storage, key: str | None) -> str | None:
    return storage.url(key) if key else None
