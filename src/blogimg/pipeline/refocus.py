"""A focal point set after an image was made: its thumbnail is cropped again around it.

The thumbnail is made from the stored master (no provider call), stored under its own
content-addressed key before the row points at it; the old thumbnail file is left for
``cleanup`` (another image may share it, and a reader may still be loading it).
"""

from __future__ import annotations

import asyncio

from blogimg.db.catalog import Catalog, RemadeFile
from blogimg.domain import Status
from blogimg.imaging.process import ImagingOptions, make_thumbnail
from blogimg.storage.base import Storage


async def refocus_thumbnail(catalog: Catalog, storage: Storage, options: ImagingOptions, image_id: int,
                            focal_point: tuple[float, float]) -> bool:
    """Crop the thumbnail of a made image around ``focal_point`` (fractions 0..1); False if not made."""
    found = await catalog.image_files([image_id])
    files = found[0] if found else None
    if files is None or files.status != Status.SUCCEEDED or not files.master_key or not files.thumbnail_key:
        return False
    old_thumbnail = files.thumbnail_key
    master = await storage.get(files.master_key)
    thumbnail = await asyncio.to_thread(make_thumbnail, master, options, focal_point)
    await storage.put(thumbnail.storage_key, thumbnail.data, thumbnail.content_type)
    if thumbnail.storage_key == old_thumbnail:
        return True
    return await catalog.replace_file_keys(image_id, variants=[], thumbnail=RemadeFile(
        format=thumbnail.format, width=thumbnail.width, height=thumbnail.height, bytes=len(thumbnail.data),
        old_key=old_thumbnail, new_key=thumbnail.storage_key))
