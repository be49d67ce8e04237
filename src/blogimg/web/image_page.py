"""One image's page at ``/images/{id}``: the picture and its variants, prompts, curation, the ledger.

The page is server-rendered; what changes while it is open (status, files, the timeline of
provider calls) is one region, ``/images/{id}/live``, that htmx fetches again when live.js
reports a change of this image (static/image.js) or after an edit. Edits and retries go to the
REST API itself (``PUT /api/images/{id}``, ``POST /api/images/{id}/retry``) with the page's
CSRF header, so the page can do nothing a client of the API cannot. A read-only viewer is
shown no control that changes anything: alt text and rating read as text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from blogimg.api.deps import database, runtime
from blogimg.db.catalog import LARGEST_ID, ImageWithVariants
from blogimg.db.tables import GenerationAttempt
from blogimg.domain import Status
from blogimg.storage.base import Storage
from blogimg.web.picture import PictureVariant, picture_markup
from blogimg.web.templating import latest_event_id, render

router = APIRouter(include_in_schema=False)

#: Formats a browser shows in the page's large view, best first; the master is the fallback.
_DISPLAY_FORMATS = ("webp", "jpeg", "png", "avif")
#: The widest variant the page shows: larger files only cost time at this size on screen.
_DISPLAY_WIDTH = 1280


@dataclass(frozen=True, slots=True)
class VariantRow:
    """One stored file, and what it saves against the provider's original."""

    format: str
    width: int
    height: int
    bytes: int
    url: str
    saved_bytes: int | None  #: negative when the file is larger than the original
    saved_percent: float | None
    encoding: str | None = None  #: "q 62 · 74.3", "lossless" …; None when not known (encoding_label)
    encoder: str | None = None


@dataclass(frozen=True, slots=True)
class ImageView:
    """Everything the image page shows of one image."""

    item: ImageWithVariants
    display_url: str | None  #: the large view: a variant a browser shows, or the master
    thumbnail_url: str | None
    variants: list[VariantRow]
    markup: str  #: ready <picture> markup; "" until the image has files
    attempts: list[GenerationAttempt]

    @property
    def image(self) -> Any:
        return self.item.image

    @property
    def focal(self) -> tuple[float, float] | None:
        image = self.item.image
        return (image.focal_x, image.focal_y) if image.focal_x is not None and image.focal_y is not None else None

    @property
    def failed(self) -> bool:
        return bool(self.item.image.status == Status.FAILED)

    @property
    def master_encoding(self) -> str | None:
        image = self.item.image
        return encoding_label(image.master_quality, image.master_score, image.master_encoder)


def encoding_label(quality: int | None, score: float | None, encoder: str | None) -> str | None:
    """How a file was encoded, in short: "q 62 · 74.3" (quality chosen, SSIMULACRA2 score), "lossless",
    or None when nothing is known (files made before quality search was recorded)."""
    if encoder is not None and (encoder.endswith("-lossless") or encoder == "libpng"):  # PNG has no lossy mode
        return "lossless"
    parts = ([f"q {quality}"] if quality is not None else []) + ([f"{score:.1f}"] if score is not None else [])
    return " · ".join(parts) or None


def variant_rows(item: ImageWithVariants, storage: Storage) -> list[VariantRow]:
    """The image's files by format, then width, each with its saving against the original."""
    original = item.image.bytes_original
    rows = []
    for variant in sorted(item.variants, key=lambda v: (v.format, v.width)):
        saved = original - variant.bytes if original else None
        rows.append(VariantRow(variant.format, variant.width, variant.height, variant.bytes,
                               storage.url(variant.storage_key), saved,
                               100.0 * saved / original if saved is not None and original else None,
                               encoding_label(variant.quality, variant.score, variant.encoder), variant.encoder))
    return rows


def _display_url(item: ImageWithVariants, storage: Storage) -> str | None:
    for name in _DISPLAY_FORMATS:
        fitting = [v for v in item.variants if v.format == name and v.width <= _DISPLAY_WIDTH]
        if fitting:
            return storage.url(max(fitting, key=lambda v: v.width).storage_key)
    return storage.url(item.image.storage_key) if item.image.storage_key else None


async def image_view(request: Request, image_id: int) -> ImageView | None:
    """The page's data for one image; None when there is no such image."""
    opened = await database(request)
    item = await opened.catalog.image(image_id)
    if item is None:
        return None
    storage = (await runtime(request)).storage
    rows = variant_rows(item, storage)
    markup = picture_markup([PictureVariant(row.format, row.width, row.height, row.url) for row in rows],
                            alt=item.image.alt_text, lqip=item.image.lqip)
    image = item.image
    return ImageView(item=item, display_url=_display_url(item, storage),
                     thumbnail_url=storage.url(image.thumbnail_key) if image.thumbnail_key else None,
                     variants=rows, markup=markup, attempts=await opened.attempts.timeline(image_id) or [])


def parse_id(raw: str) -> int | None:
    """An image id from the path: plain digits within the ids rows can have, else None (404)."""
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 10 and 1 <= int(raw) <= LARGEST_ID else None


@router.get("/images/{image_id}", response_class=HTMLResponse)
async def image_page(request: Request, image_id: str,
                     last_event_id: Annotated[int, Depends(latest_event_id)]) -> HTMLResponse:
    number = parse_id(image_id)
    view = await image_view(request, number) if number is not None else None
    context = {"view": view, "image_id": image_id, "last_event_id": last_event_id}
    return render(request, "image.html", context, status_code=200 if view else 404)


@router.get("/images/{image_id}/live", response_class=HTMLResponse)
async def image_live(request: Request, image_id: str) -> HTMLResponse:
    """The region that changes while the page is open, for htmx to swap in."""
    number = parse_id(image_id)
    view = await image_view(request, number) if number is not None else None
    if view is None:
        return render(request, "partials/image_gone.html", {"image_id": image_id}, status_code=200)
    return render(request, "partials/image_live.html", {"view": view})
