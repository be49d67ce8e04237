"""``blogimg search``, ``retry`` and ``cleanup``: the catalogue from the command line.

Registered on the same Typer app as the rest of the CLI (see the end of cli.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from sqlalchemy import select, update

from blogimg.cli import _guard, _print_summary, _ProgressDisplay, _settings, app, console
from blogimg.config import Settings
from blogimg.db.catalog import Catalog
from blogimg.db.engine import open_database
from blogimg.db.queue import record_events
from blogimg.db.tables import GeneratedImage
from blogimg.domain import EventKind, ProgressEvent, RunSummary, Status
from blogimg.errors import InputError


@asynccontextmanager
async def _catalog(settings: Settings) -> AsyncIterator[Catalog]:
    """The catalogue of ``settings``' database, migrated, for one command; closed afterwards."""
    engine, sessions = await open_database(settings.database_url)
    try:
        yield Catalog(engine, sessions)
    finally:
        await engine.dispose()


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="Text to find in prompts and alt text.")],
    status: Annotated[str | None, typer.Option(help="queued, running, succeeded or failed.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
) -> None:
    """Find images by their prompt or alt text, newest first."""

    def work() -> None:
        settings = _settings()

        async def find():  # type: ignore[no-untyped-def]
            async with _catalog(settings) as catalog:
                return await catalog.search(text=query, provider=None, status=status, post_id=None,
                                            created_from=None, created_to=None, cursor=None, limit=limit)

        page = asyncio.run(find())
        table = Table(title=f"images matching “{escape(query)}”")
        for column in ("id", "status", "provider", "prompt", "url"):
            table.add_column(column, overflow="fold")
        for item in page.items:
            image = item.image
            table.add_row(str(image.id), image.status, image.provider or "", escape(item.prompt[:80]),
                          image.url or escape(image.error_message or ""))
        console.print(table if page.items else "no images match")

    _guard(work)


@app.command()
def retry(
    image_ids: Annotated[list[int] | None, typer.Argument(help="Images to make again (failed ones).")] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Every failed image.")] = False,
) -> None:
    """Queue failed images again and make them now (embedded worker, as ``generate`` does)."""

    def work() -> None:
        if not image_ids and not failed:
            raise InputError("name the image ids to retry, or pass --failed for every failed image")
        settings = _settings()
        with _ProgressDisplay() as display:
            summary = asyncio.run(_retry(settings, list(image_ids or []), display.handle))
        _print_summary(summary)
        if summary.failed:
            raise typer.Exit(code=1)

    _guard(work)


async def _retry(settings: Settings, image_ids: list[int], on_event) -> RunSummary:  # type: ignore[no-untyped-def]
    from blogimg.pipeline.generate import _summarise
    from blogimg.pipeline.runtime import open_runtime

    async with open_runtime(settings) as runtime:
        repository = runtime.repository
        batch_id = await repository.create_batch()
        async with repository.sessions.begin() as session:
            chosen = GeneratedImage.status == Status.FAILED
            if image_ids:
                chosen = chosen & GeneratedImage.id.in_(image_ids)
            ids = list(await session.scalars(select(GeneratedImage.id).where(chosen)))
            if ids:
                await session.execute(
                    update(GeneratedImage).where(GeneratedImage.id.in_(ids)).values(
                        status=Status.QUEUED, error_code=None, error_message=None, attempts=0, batch_id=batch_id)
                    .execution_options(synchronize_session=False))
                await record_events(session, [(image_id, batch_id) for image_id in ids], Status.QUEUED)
        await repository.set_batch_total(batch_id, len(ids))
        summary = RunSummary(batch_id=batch_id, queued=len(ids))
        on_event(ProgressEvent(EventKind.QUEUED, total=len(ids)))
        if ids:
            await runtime.worker(on_event=on_event).run(batch_id=batch_id)
        await repository.finish_batch(batch_id)
        await _summarise(repository, batch_id, summary)
        return summary


@app.command()
def cleanup(
    apply: Annotated[bool, typer.Option("--apply", help="Delete orphan files (default: only report).")] = False,
    grace_seconds: Annotated[float, typer.Option(min=0, help="Only delete files older than this.")] = 3600.0,
) -> None:
    """Report files with no row and rows whose files are missing; --apply deletes old orphan files."""
    from blogimg.pipeline.cleanup import find_orphans
    from blogimg.storage.factory import build_storage

    def work() -> None:
        settings = _settings()

        async def run():  # type: ignore[no-untyped-def]
            async with _catalog(settings) as catalog:
                return await find_orphans(catalog, build_storage(settings), apply=apply, grace_seconds=grace_seconds)

        report = asyncio.run(run())
        console.print(f"files with no row: {len(report.files_without_rows)}")
        for key in report.files_without_rows[:50]:
            console.print(f"  {key}", highlight=False)
        console.print(f"images whose files are missing: {len(report.rows_missing_files)}"
                      + (f" (ids {', '.join(map(str, report.rows_missing_files[:50]))})" if report.rows_missing_files else ""))
        if apply:
            console.print(f"deleted {len(report.deleted)} files older than {grace_seconds:g} s")
        elif report.files_without_rows:
            console.print("dry run: nothing deleted; pass --apply to delete orphan files older than the grace period")

    _guard(work)


__all__ = ["cleanup", "retry", "search"]
