"""Commands that read the catalogue: ``stats``, ``search``, ``cleanup``, ``providers`` and ``rebuild-rollups``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from blogimg.cli.output import (
    ProgressDisplay,
    bytes_line,
    console,
    guarded,
    load_settings,
    money,
    print_summary,
)
from blogimg.config import Settings
from blogimg.db.analytics import Grouping
from blogimg.db.catalog import Page
from blogimg.db.database import Database
from blogimg.db.engine import sqlite_file
from blogimg.db.reporting import Totals
from blogimg.db.rollups import RebuildReport, rebuild
from blogimg.domain import Status
from blogimg.errors import BlogimgError, ConfigurationError
from blogimg.pipeline.cleanup import CleanupReport, find_orphans
from blogimg.storage.factory import build_storage


def _catalogue_settings() -> Settings:
    """Settings whose catalogue exists: these commands only read it, so they must not create one."""
    settings = load_settings()
    path = sqlite_file(settings.database_url)
    if path is not None and not path.exists():
        raise ConfigurationError(
            f"no catalogue at {path.resolve()}: point BLOGIMG_DATABASE_URL at one, "
            "or run 'blogimg generate' (or 'blogimg init') to create it here")
    return settings


@asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[Database]:
    """The catalogue of ``settings``' database, migrated, for one command; closed afterwards."""
    database = await Database.open(settings.database_url)
    try:
        yield database
    finally:
        await database.close()


def stats(
    by: Annotated[Grouping | None, typer.Option(
        "--by", help="Spend, accepted images, cost per image and regeneration by day, month or provider; "
                     "with storage by format and ratings.")] = None,
    days: Annotated[int | None, typer.Option(min=1, help="With --by: only the last N UTC days.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="With --by: the JSON GET /api/analytics answers.")] = False,
) -> None:
    """Images by status and provider, cost and bytes saved (--by: analytics grouped one way)."""

    def work() -> None:
        settings = _catalogue_settings()
        if by is not None or as_json:
            from blogimg.cli.analytics import print_analytics

            print_analytics(settings, by or "day", days, as_json)
            return

        async def read() -> Totals:
            async with _database(settings) as database:
                return await database.reporting.totals()

        totals = asyncio.run(read())
        table = Table(title=f"blogimg — {totals.posts} posts")
        table.add_column("status")
        table.add_column("images", justify="right")
        for status, count in totals.by_status.items():
            table.add_row(status.value, str(count))
        console.print(table)
        providers = Table(title="provider calls")
        for column in ("provider", "calls", "ok", "cost", "mean latency"):
            providers.add_column(column, justify="left" if column == "provider" else "right")
        for row in totals.by_provider:
            providers.add_row(row.provider, str(row.calls), str(row.ok), money(row.cost_usd, row.unknown_cost_calls),
                              f"{row.mean_latency_ms} ms")
        console.print(providers)
        console.print(bytes_line(totals.bytes_original, totals.bytes_stored))

    guarded(work)


def rebuild_rollups() -> None:
    """Recompute the daily rollups (what the stats and the status page read) from images and ledger."""

    def work() -> None:
        settings = _catalogue_settings()

        async def run() -> RebuildReport:
            async with _database(settings) as database:  # opening migrates: 0008 makes and fills them
                return await rebuild(database.engine)

        started = time.perf_counter()
        with console.status("rebuilding rollups (writers wait until it is done)…"):
            report = asyncio.run(run())
        console.print(f"rebuilt rollups: {report.images:,} images and {report.calls:,} provider calls "
                      f"in {report.rows:,} rows ({time.perf_counter() - started:.1f} s)", highlight=False)

    guarded(work)


def search(
    query: Annotated[str, typer.Argument(help="Text to find in prompts and alt text.")],
    status: Annotated[Status | None, typer.Option(help="Only images with this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
) -> None:
    """Find images by their prompt or alt text, newest first."""

    def work() -> None:
        settings = _catalogue_settings()
        storage = build_storage(settings, writable=False)  # only to build URLs: a read-only mount will do

        async def find() -> Page:
            async with _database(settings) as database:
                return await database.catalog.search(text=query, provider=None, status=status, post_id=None,
                                                     created_from=None, created_to=None, cursor=None, limit=limit)

        page = asyncio.run(find())
        table = Table(title=f"images matching “{escape(query)}”")
        for column in ("id", "status", "provider", "prompt", "url"):
            table.add_column(column, overflow="fold")
        for item in page.items:
            image = item.image
            where = escape(storage.url(image.storage_key) if image.storage_key else image.error_message or "")
            table.add_row(str(image.id), image.status.value, image.provider or "", escape(item.prompt[:80]), where)
        console.print(table if page.items else "no images match")

    guarded(work)


def cleanup(
    apply: Annotated[bool, typer.Option("--apply", help="Delete orphan files (default: only report).")] = False,
    grace_seconds: Annotated[float, typer.Option(min=0, help="Only delete files older than this.")] = 3600.0,
    repair: Annotated[bool, typer.Option(
        "--repair", help="Make missing variant and thumbnail files again from the stored master.")] = False,
    remake: Annotated[bool, typer.Option(
        "--remake", help="Also queue images whose master is gone and make them again (calls a provider; "
                         "costs money). Implies --repair.")] = False,
) -> None:
    """Report files with no row and rows whose files are missing; --apply deletes old orphan files,
    --repair re-makes missing files from masters, --remake asks a provider again when the master is gone."""
    from blogimg.domain import RunSummary
    from blogimg.imaging.process import ImagingOptions
    from blogimg.pipeline.repair import REMAKE_COMMAND, remake_lost
    from blogimg.pipeline.runtime import open_runtime

    def work() -> None:
        settings = _catalogue_settings()
        imaging = ImagingOptions.from_settings(settings)
        remade: RunSummary | None = None

        async def run() -> CleanupReport:
            async with _database(settings) as database:
                return await find_orphans(database.catalog, build_storage(settings), apply=apply,
                                          grace_seconds=grace_seconds, repair=repair or remake, imaging=imaging)

        async def run_remake(display: ProgressDisplay) -> tuple[CleanupReport, RunSummary | None]:
            async with open_runtime(settings) as runtime:  # providers first: a bad setting stops it all
                found = await find_orphans(runtime.database.catalog, runtime.storage, apply=apply,
                                           grace_seconds=grace_seconds, repair=True, imaging=imaging)
                if not found.masters_missing:
                    return found, None
                return found, await remake_lost(runtime, found.masters_missing, on_event=display.handle)

        if remake:
            with ProgressDisplay() as display:
                report, remade = asyncio.run(run_remake(display))
        else:
            report = asyncio.run(run())
        _print_cleanup(report, apply=apply, grace_seconds=grace_seconds, remake_command=REMAKE_COMMAND,
                       remade=remade is not None)
        if remade is not None:
            print_summary(remade, "cleanup --remake")
        if (remade is not None and remade.failed) or (report.repair is not None and report.repair.not_repaired):
            raise typer.Exit(code=1)

    guarded(work)


def _ids(ids: list[int]) -> str:
    return f" (ids {', '.join(map(str, ids[:50]))}{', …' if len(ids) > 50 else ''})" if ids else ""


def _print_cleanup(report: CleanupReport, *, apply: bool, grace_seconds: float, remake_command: str,
                   remade: bool) -> None:
    console.print(f"files with no row: {len(report.files_without_rows)}")
    for key in report.files_without_rows[:50]:
        console.print(f"  {escape(key)}", highlight=False)  # a key may hold [ and ]: not markup
    console.print(f"images whose files are missing: {len(report.rows_missing_files)}{_ids(report.rows_missing_files)}",
                  highlight=False)
    fixed = report.repair
    if fixed is not None:
        if fixed.repaired:
            console.print(f"repaired {len(fixed.repaired)} images from their stored master{_ids(fixed.repaired)}: "
                          f"{len(fixed.files)} files made again"
                          + (f"; {len(fixed.rekeyed)} re-encoded from a lossy master under new keys"
                             if fixed.rekeyed else ""), highlight=False)
        for image_id, why in sorted(fixed.not_repaired.items()):
            console.print(f"  image {image_id} not repaired: {escape(why)}", highlight=False)
    elif report.repairable:
        console.print(f"{len(report.repairable)} of them can be made again from their stored master "
                      f"(no provider call): blogimg cleanup --repair", highlight=False)
    if report.masters_missing:
        console.print(f"images whose master is gone too: {len(report.masters_missing)}{_ids(report.masters_missing)}"
                      + ("; queued again:" if remade else
                         f"; only a provider can make them again (costs money): {remake_command}"), highlight=False)
    if report.originals_missing:
        console.print(f"images whose provider original (C2PA) is gone: {len(report.originals_missing)}"
                      f"{_ids(report.originals_missing)}; it cannot be made again", highlight=False)
    if apply:
        console.print(f"deleted {len(report.deleted)} files older than {grace_seconds:g} s")
        if report.kept_undated:
            console.print(f"kept {len(report.kept_undated)} orphan files whose age the storage does not tell; "
                          "--grace-seconds 0 deletes them, but is safe only with every worker stopped "
                          "(a file stored just now may not have its row yet)", highlight=False)
    elif report.files_without_rows:
        console.print("dry run: nothing deleted; pass --apply to delete orphan files older than the grace period")


def providers() -> None:
    """Which providers exist, which are configured, their models, and what an image costs."""
    from blogimg.providers.pricing import UNKNOWN, default_prices, model_prices
    from blogimg.providers.registry import ProviderRegistry

    def work() -> None:
        settings = load_settings()
        registry, prices = ProviderRegistry(), default_prices()
        order = settings.providers or registry.default_order()
        table = Table(title="providers (fallback order: " + " → ".join(order) + ")",
                      caption=f"* = the model in use; list prices per image at quality '{settings.quality}' "
                              f"(or per 1M image tokens where only that is published), as of {prices.as_of}; "
                              "unknown prices are recorded as unknown, never $0")
        for column in ("name", "configured", "models and their prices", "needs"):
            table.add_column(column, overflow="fold")
        for name in registry.names():
            try:
                info = registry.info(name)
            except BlogimgError as error:
                table.add_row(name, "[red]unavailable[/]", "", escape(str(error)))
                continue
            is_configured = registry.is_configured(name)
            configured = "[green]yes[/]" if is_configured else "[yellow]no[/]"
            needs = " or ".join(info.key_env_vars) if info.needs_key else "nothing (offline)"
            missing = registry.missing_modules(name)
            if missing:
                configured = "[red]SDK missing[/]"
                needs = escape(f"pip install 'blogimg[{info.extra or name}]'; then {needs}")
            model = {"openai": settings.openai_model, "google": settings.google_model}.get(name, info.models[0])
            others = [m for m in info.models if m != model]
            # A configured provider lists every model it offers; others show the one in use.
            shown = [model, *others] if is_configured and not missing else [model]
            lines = [("* " if listed == model else "  ") + escape(listed) + ": "
                     + ("[yellow]unknown[/]" if price == UNKNOWN else price)
                     for listed, price in model_prices(name, shown, settings.quality, prices)]
            if len(shown) == 1 and others:
                lines[0] += f" (+{len(others)} more)"
            table.add_row(name, configured, "\n".join(lines), needs)
        console.print(table)

    guarded(work)
