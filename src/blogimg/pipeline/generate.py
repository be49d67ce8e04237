"""``generate``: posts in, images out — enqueue a batch and run an embedded worker until it is done.

The same queue and worker serve ``blogimg worker`` and the API; ``generate`` only adds reading
posts from disk and waiting for its own batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from blogimg.config import Settings
from blogimg.db.repository import Repository
from blogimg.domain import EventKind, ExtractedPost, ProgressEvent, RunSummary, Size, Status
from blogimg.errors import InputError
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
        repository = runtime.repository
        summary = RunSummary(posts=len(posts))
        batch_id = await repository.create_batch()
        summary.batch_id = batch_id
        for post in posts:
            result = await repository.save_post_and_enqueue(post, batch_id)
            summary.opted_out += post.opted_out
            summary.prompts += len(post.prompts)
            summary.queued += len(result.queued_image_ids)
            summary.already_done += result.already_done
        await repository.set_batch_total(batch_id, summary.queued)
        emit = on_event or (lambda event: None)
        emit(ProgressEvent(EventKind.QUEUED, total=summary.queued))
        if summary.queued:
            await runtime.worker(on_event=on_event).run(batch_id=batch_id)
        await repository.finish_batch(batch_id)
        await _summarise(repository, batch_id, summary)
        summary.seconds = time.monotonic() - started
        emit(ProgressEvent(EventKind.FINISHED, total=summary.queued,
                           done=summary.succeeded + summary.failed))
        return summary


async def _summarise(repository: Repository, batch_id: int, summary: RunSummary) -> None:
    for image in await repository.batch_images(batch_id):
        if image.status == Status.SUCCEEDED:
            summary.succeeded += 1
            summary.bytes_original += image.bytes_original or 0
            summary.bytes_stored += image.bytes_stored or 0
        elif image.status == Status.FAILED:
            summary.failed += 1
            summary.failures.append((image.id, image.error_code or "", image.error_message or ""))
    calls, cost, unknown = await repository.batch_ledger(batch_id)
    summary.provider_calls, summary.cost_usd, summary.unknown_cost_calls = calls, cost, unknown
