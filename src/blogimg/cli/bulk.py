"""Bulk commands: ``delete-images``, ``remake-variants`` and ``prune-events`` (and the ids that
``retry --batch/--post`` retries)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from blogimg.cli.output import console, guarded, load_settings
from blogimg.config import Settings
from blogimg.db.database import Database
from blogimg.db.engine import sqlite_file
from blogimg.errors import ConfigurationError, InputError

PostOption = Annotated[int, typer.Option("--post", min=1, max=2**31 - 1, help="The post's id.")]


@asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[Database]:
    path = sqlite_file(settings.database_url)
    if path is not None and not path.exists():  # these commands act on a catalogue: never make an empty one
        raise ConfigurationError(f"no catalogue at {path.resolve()}: point BLOGIMG_DATABASE_URL at one")
    database = await Database.open(settings.database_url)
    try:
        yield database
    finally:
        await database.close()


def failed_image_ids(settings: Settings, *, batch_id: int | None, post_id: int | None) -> list[int]:
    """The failed images of a batch or a post, for ``blogimg retry --batch/--post``."""
    from blogimg.pipeline.bulk_actions import describe_ids, failed_images

    async def read() -> list[int]:
        async with _database(settings) as database:
            return await failed_images(database, batch_id=batch_id, post_id=post_id)

    found = asyncio.run(read())
    if not found:
        raise InputError(f"no failed image in {'batch' if batch_id else 'post'} {batch_id or post_id}")
    console.print(f"retrying {len(found)} failed images ({describe_ids(found)})", highlight=False)
    return found


def delete_images(
    post: PostOption,
    yes: Annotated[bool, typer.Option("--yes", help="Delete (default: only list what would go).")] = False,
) -> None:
    """Delete a post's images: rows first, then the files no other image shares (the post stays)."""
    from blogimg.domain import Status
    from blogimg.pipeline.bulk_actions import DeleteReport, delete_post_images, describe_ids
    from blogimg.storage.factory import build_storage

    def work() -> None:
        settings = load_settings()

        async def run() -> DeleteReport | dict[int, Status]:
            async with _database(settings) as database:
                if not yes:
                    from blogimg.db.bulk import BulkRows

                    return await BulkRows(database.engine, database.sessions).images_of_post(post)
                return await delete_post_images(database, build_storage(settings), post)

        result = asyncio.run(run())
        if isinstance(result, dict):
            ids = sorted(result)
            console.print(f"post {post} has {len(ids)} images" + (f" ({describe_ids(ids)})" if ids else "")
                          + "; pass --yes to delete them and their files", highlight=False)
            return
        console.print(f"deleted {len(result.deleted)} images of post {post} and {len(result.files_deleted)} files",
                      highlight=False)
        if result.running:
            console.print(f"left {len(result.running)} running images to their worker ({describe_ids(result.running)});"
                          " run again when they are done", highlight=False)

    guarded(work)


def remake_variants(
    max_images: Annotated[int | None, typer.Option(min=1, help="Stop after this many images.")] = None,
) -> None:
    """Make the variants today's settings ask for (new widths or formats) that images lack, from
    their stored masters: no provider call, nothing spent."""
    from blogimg.db.bulk import BulkRows
    from blogimg.imaging.process import ImagingOptions
    from blogimg.pipeline.remake_variants import RemakeReport
    from blogimg.pipeline.remake_variants import remake_variants as run_remake
    from blogimg.storage.factory import build_storage

    def work() -> None:
        settings = load_settings()
        progress = Progress(TextColumn("[bold]images"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[added]} variants added"), TimeElapsedColumn(), console=console)

        async def run() -> RemakeReport:
            async with _database(settings) as database:
                rows = BulkRows(database.engine, database.sessions)
                total = await rows.succeeded_count()
                task = progress.add_task("images", total=min(total, max_images or total), added=0)
                with progress:
                    return await run_remake(rows, build_storage(settings), ImagingOptions.from_settings(settings),
                                            max_images=max_images, on_image=lambda report: progress.update(
                                                task, completed=report.images_seen, added=report.variants_added))

        report = asyncio.run(run())
        console.print(f"added {report.variants_added} variants to {report.images_changed} of {report.images_seen} "
                      f"images ({report.bytes_added:,} bytes); no provider was called", highlight=False)
        for image_id, why in sorted(report.skipped.items())[:50]:
            console.print(f"  image {image_id} skipped: {escape(why)}", highlight=False)
        if report.next_after_id is not None:
            console.print("stopped at --max-images; run again for the rest", highlight=False)
        if report.skipped:
            raise typer.Exit(code=1)

    guarded(work)


def prune_events(
    days: Annotated[float | None, typer.Option(min=0.001, help="Keep this many days (default: the setting "
                                                               "EVENT_RETENTION_DAYS, 30).")] = None,
) -> None:
    """Delete image status events older than the retention; the newest event always stays."""
    from blogimg.pipeline.bulk_actions import prune_events as run_prune

    def work() -> None:
        settings = load_settings()
        retention = days if days is not None else settings.event_retention_days

        async def run() -> int:
            async with _database(settings) as database:
                return await run_prune(database, retention)

        console.print(f"deleted {asyncio.run(run()):,} events and finished webhook deliveries older than "
                      f"{retention:g} days", highlight=False)

    guarded(work)
