"""``generate`` and ``retry``: enqueue a batch and run an embedded worker until it is done.

The same queue, worker and ``run_batch`` serve ``blogimg worker`` and the API; ``generate`` only
adds reading posts from disk, ``retry`` choosing failed images.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from blogimg.config import Settings
from blogimg.db.jobs import FailedToRetry, PostsToEnqueue
from blogimg.domain import ExtractedPost, ProgressEvent, RunSummary, Size
from blogimg.errors import InputError
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
            posts = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MARKDOWN_SUFFIXES)
            if not posts:
                raise InputError(f"{path}: no markdown posts (*.md, *.markdown) in this directory")
            found.extend(posts)
        elif path.suffix.lower() in MARKDOWN_SUFFIXES:
            found.append(path)
        else:
            raise InputError(f"{path}: not a markdown file (expected .md or .markdown)")
    return list(dict.fromkeys(p.resolve() for p in found))


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
            raise InputError(f"{post.source_path} and {slugs[post.slug]} have the same slug {post.slug!r}")
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
    """Queue failed images again (these ids, or every failed one) and make them now."""
    async with open_runtime(settings, registry=registry, storage=storage) as runtime:
        return await run_batch(runtime.database, FailedToRetry(image_ids),
                               worker=runtime.worker(on_event=on_event), on_event=on_event)
