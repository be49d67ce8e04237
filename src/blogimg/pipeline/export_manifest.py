"""What ``blogimg export`` says about each post: its made images in post order, as plain JSON data.

One image per prompt: the newest succeeded variation (a remade image replaces the one before it).
Images not made yet are left out of a manifest and counted in ``missing``, so a site never links
to a file that does not exist. Every image carries the same ``<picture>`` markup the API and the
status page give (web/picture.py), and the pieces a template needs to build its own.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from blogimg.db.database import Database
from blogimg.db.tables import BlogPost, GeneratedImage, ImagePromptRow, ImageVariant
from blogimg.domain import PromptKind, Status
from blogimg.storage.base import Storage
from blogimg.web.picture import (
    PictureVariant,
    default_sizes,
    fallback_format,
    picture_markup,
    srcset_text,
    variants_by_format,
)

#: Kinds in the order a post shows them: the cover first, then the rest by position.
_KIND_ORDER = {PromptKind.COVER.value: 0}
#: Slugs asked for by name in one query at most; more are filtered as the posts are read.
_MAX_BOUND = 500


@dataclass(frozen=True, slots=True)
class PostManifest:
    """One post's export: ``data`` is what the manifest file holds."""

    slug: str
    source_path: str | None
    prompts: int  #: images the post asks for
    missing: int  #: of those, how many have no succeeded image yet
    data: dict[str, Any]
    by_fingerprint: dict[str, dict[str, Any]]  #: each entry by its prompt's fingerprint, for write-back

    @property
    def images(self) -> list[dict[str, Any]]:
        images: list[dict[str, Any]] = self.data["images"]
        return images


async def post_manifests(database: Database, storage: Storage, slugs: Sequence[str] | None = None) -> list[PostManifest]:
    """A manifest for every post (or the posts of these slugs), ordered by slug."""
    return [manifest async for manifest in each_post_manifest(database, storage, slugs)]


async def each_post_manifest(database: Database, storage: Storage,
                             slugs: Sequence[str] | None = None) -> AsyncIterator[PostManifest]:
    """The manifests one post at a time, ordered by slug.

    Each post's rows are read by its id (joins, never a list of ids as bound variables: SQLite
    refuses more than some thousands of them), so a large catalogue is never held at once.
    """
    wanted = set(slugs) if slugs is not None else None
    async with database.sessions() as session:
        query = select(BlogPost.id).order_by(BlogPost.slug)
        if wanted is not None and len(wanted) <= _MAX_BOUND:
            query = query.where(BlogPost.slug.in_(list(wanted)))
        post_ids = list(await session.scalars(query))
    for post_id in post_ids:
        async with database.sessions() as session:
            post = await session.get(BlogPost, post_id)
            if post is None or (wanted is not None and post.slug not in wanted):
                continue  # removed since the list was read, or not asked for
            prompts = list(await session.scalars(
                select(ImagePromptRow).where(ImagePromptRow.post_id == post_id)))
            # Only the newest succeeded image of each prompt: older variations are never exported.
            newest = (select(func.max(GeneratedImage.id))
                      .where(GeneratedImage.post_id == post_id, GeneratedImage.status == Status.SUCCEEDED)
                      .group_by(GeneratedImage.prompt_id).scalar_subquery())
            images = list(await session.scalars(
                select(GeneratedImage).where(GeneratedImage.id.in_(newest)).order_by(GeneratedImage.id)))
            variants: dict[int, list[ImageVariant]] = {}
            for variant in await session.scalars(
                    select(ImageVariant).where(ImageVariant.image_id.in_(newest))
                    .order_by(ImageVariant.format, ImageVariant.width)):
                variants.setdefault(variant.image_id, []).append(variant)
        yield _manifest(post, prompts, images, variants, storage)


def _manifest(post: BlogPost, prompts: list[ImagePromptRow], images: list[GeneratedImage],
              variants: dict[int, list[ImageVariant]], storage: Storage) -> PostManifest:
    newest: dict[int, GeneratedImage] = {}
    for image in images:  # by id: the last one seen per prompt is the newest
        newest[image.prompt_id] = image
    ordered = sorted(prompts, key=lambda row: (_KIND_ORDER.get(row.kind, 1), row.position, row.id))
    made = [prompt for prompt in ordered if prompt.id in newest]
    entries = [image_entry(prompt, newest[prompt.id], variants.get(newest[prompt.id].id, []), storage)
               for prompt in made]
    cover_image = next((newest[prompt.id] for prompt in made if prompt.kind == PromptKind.COVER.value), None)
    # The master, not the largest variant: front matter and og:image want a format every reader
    # takes, and the variants may all be AVIF or WebP.
    cover = storage.url(cover_image.storage_key) if cover_image is not None and cover_image.storage_key else None
    data = {"slug": post.slug, "title": post.title, "cover": cover, "images": entries}
    return PostManifest(post.slug, post.source_path, len(prompts), len(prompts) - len(entries), data,
                        {prompt.fingerprint: entry for prompt, entry in zip(made, entries, strict=True)})


def public_url_prefix(storage: Storage) -> str | None:
    """What every URL the storage gives starts with, or None when two keys share no start."""
    try:
        first, second = storage.url("a.png"), storage.url("b.png")
    except Exception:  # noqa: BLE001 - a storage that cannot name a URL offline has no known prefix
        return None
    prefix = os.path.commonprefix([first, second])
    return prefix if "://" in prefix or prefix.startswith("/") else None


def image_entry(prompt: ImagePromptRow, image: GeneratedImage, variants: list[ImageVariant],
                storage: Storage) -> dict[str, Any]:
    """One image's manifest entry; every key is present in every entry (null when unknown), so a
    template can use any of them on any image."""
    files = [PictureVariant(variant.format, variant.width, variant.height, storage.url(variant.storage_key))
             for variant in variants]
    by_format = variants_by_format(files)
    fallback = fallback_format(by_format)
    largest = max(by_format[fallback].values(), key=lambda file: file.width) if fallback else None
    sizes = default_sizes(by_format) if by_format else None
    return {
        "id": image.id,
        "kind": prompt.kind,
        "position": prompt.position,
        "alt": image.alt_text or "",
        "src": largest.url if largest else (storage.url(image.storage_key) if image.storage_key else None),
        "width": largest.width if largest else image.width,
        "height": largest.height if largest else image.height,
        "lqip": image.lqip,
        "dominant_color": image.dominant_color,
        "sizes": sizes,
        # Both keys always there ("" when a format was not made): a template's {{ .srcset.avif }}
        # then never meets a missing key.
        "srcset": {name: srcset_text(by_format[name]) if name in by_format else "" for name in ("avif", "webp", "jpeg")},
        "variants": [{"format": variant.format, "width": variant.width, "height": variant.height,
                      "url": storage.url(variant.storage_key), "bytes": variant.bytes} for variant in variants],
        "markup": picture_markup(files, alt=image.alt_text, lqip=image.lqip, sizes=sizes,
                                 eager=prompt.kind == PromptKind.COVER.value),
    }
