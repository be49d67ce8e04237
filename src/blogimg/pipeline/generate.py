"""``generate`` and ``retry``: enqueue a batch and run an embedded worker until it is done.

The same queue, worker and ``run_batch`` serve ``blogimg worker`` and the API; ``generate`` only
adds reading posts from disk, ``retry`` choosing failed images.
"""

from __future__ import annotations

import stat
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from blogimg.config import Settings
from blogimg.db.database import Database
from blogimg.db.jobs import FailedToRetry, PostsToEnqueue
from blogimg.domain import ExtractedPost, ProgressEvent, RunSummary, Size, Status
from blogimg.errors import InputError, NotFoundError
from blogimg.pipeline.batches import run_batch
from blogimg.pipeline.runtime import open_runtime
from blogimg.prompts.extract import MARKDOWN_SUFFIXES, PromptExtractor, read_post_file
from blogimg.providers.registry import ProviderRegistry
from blogimg.storage.base import Storage

EventCallback = Callable[[ProgressEvent], None]


def find_post_files(paths: Iterable[str | Path]) -> list[Path]:
    """Expand files and directories into markdown files; one clear error for anything else."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InputError(f"{path}: no such file or directory")
        if path.is_dir():
            # Not is_file(): that would pass over a pipe or device named x.md in silence, where
            # read_post_file refuses it by name (and never opens it in a way that could block).
            posts = sorted(p for p in path.rglob("*") if p.suffix.lower() in MARKDOWN_SUFFIXES and _not_a_folder(p))
            if not posts:
                raise InputError(f"{path}: no markdown posts (*.md, *.markdown) in this directory")
            found.extend(posts)
        elif path.suffix.lower() in MARKDOWN_SUFFIXES:
            found.append(path)
        else:
            raise InputError(f"{path}: not a markdown file (expected .md or .markdown)")
    return list(dict.fromkeys(p.resolve() for p in found))


def _not_a_folder(path: Path) -> bool:
    try:
        return not stat.S_ISDIR(path.stat().st_mode)
    except OSError:  # a broken link: nothing there to read, passed over as before
        return False


def extractor_for(settings: Settings) -> PromptExtractor:
    return PromptExtractor(
        cover_size=Size.parse(settings.cover_size), inline_size=Size.parse(settings.inline_size),
        section_images=settings.section_images, max_section_images=settings.max_section_images,
    )


def read_posts(paths: Iterable[str | Path], settings: Settings) -> list[ExtractedPost]:
    """Read every post before touching the database, so a broken one stops the run cleanly."""
    extractor = extractor_for(settings)
    posts = [read_post_file(path, extractor) for path in find_post_files(paths)]
    slugs: dict[str, str] = {}
    for post in posts:
        if post.slug in slugs:
            raise InputError(f"{post.source_path} and {slugs[post.slug]} have the same slug {post.slug!r}; "
                             "give one a 'slug:' in its front matter")
        slugs[post.slug] = post.source_path or ""
    return posts


async def generate(
    paths: Iterable[str | Path],
    settings: Settings,
    *,
    providers: Sequence[str] | None = None,
    registry: ProviderRegistry | None = None,
    storage: Storage | None = None,
    on_event: EventCallback | None = None,
) -> RunSummary:
    """Give the posts under ``paths`` their images; return what happened."""
    started = time.monotonic()
    posts = read_posts(paths, settings)
    async with open_runtime(settings, providers=providers, registry=registry, storage=storage) as runtime:
        summary = await run_batch(runtime.database, PostsToEnqueue(posts),
                                  worker=runtime.worker(on_event=on_event), on_event=on_event)
    summary.seconds = time.monotonic() - started  # reading the posts counts too
    return summary


async def retry(
    settings: Settings,
    image_ids: Sequence[int] | None = None,
    *,
    registry: ProviderRegistry | None = None,
    storage: Storage | None = None,
    on_event: EventCallback | None = None,
) -> RunSummary:
    """Queue failed images again (these ids, or every failed one) and make them now.

    Named ids must all be failed images: an unknown id is a NotFoundError and any other status
    an InputError, raised before anything is queued (the API answers 404 and 409).
    """
    started = time.monotonic()
    async with open_runtime(settings, registry=registry, storage=storage) as runtime:
        if image_ids is not None:
            await _check_retryable(runtime.database, image_ids)
        summary = await run_batch(runtime.database, FailedToRetry(image_ids),
                                  worker=runtime.worker(on_event=on_event), on_event=on_event)
    summary.seconds = time.monotonic() - started  # opening providers and the catalogue counts too
    return summary


async def _check_retryable(database: Database, image_ids: Sequence[int]) -> None:
    # Ids are 32-bit in the schema: a larger one names nothing (and would overflow PostgreSQL).
    statuses = await database.queue.statuses(i for i in image_ids if 0 < i < 2**31)
    unknown = [str(i) for i in dict.fromkeys(image_ids) if i not in statuses]
    if unknown:
        raise NotFoundError(f"no image with id {unknown[0]}" if len(unknown) == 1
                            else f"no images with ids {', '.join(unknown)}")
    not_failed = [f"image {i} is {statuses[i].value}" for i in dict.fromkeys(image_ids) if statuses[i] != Status.FAILED]
    if not_failed:
        raise InputError(f"{', '.join(not_failed)}; only failed images are retried")
