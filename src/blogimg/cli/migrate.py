"""``blogimg migrate-storage``: copy the library to another backend, verify it, then say what to switch."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from blogimg.cli.output import console, errors, guarded, load_settings
from blogimg.config import Settings
from blogimg.errors import ConfigurationError, InputError

if TYPE_CHECKING:
    from blogimg.pipeline.migrate_storage import MigrationReport

#: Where a library can move to (memory storage ends with the process: nothing to move to).
DESTINATIONS = ("local", "s3", "cloudinary", "vercel-blob")
PREFIXED = ("s3", "cloudinary", "vercel-blob")  #: backends that take BLOGIMG_STORAGE_PREFIX
SHOWN_FAILURES = 50


def migrate_storage(
    to: Annotated[str, typer.Option("--to", help="The backend to copy to: local, s3, cloudinary or vercel-blob.",
                                    show_default=False)],
    to_path: Annotated[Path | None, typer.Option(help="local: the folder to copy to.")] = None,
    to_bucket: Annotated[str | None, typer.Option(help="s3: the bucket to copy to.")] = None,
    to_prefix: Annotated[str | None, typer.Option(
        help="s3, cloudinary, vercel-blob: the folder every key goes under (default: BLOGIMG_STORAGE_PREFIX).")] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Objects copied at once.")] = 4,
) -> None:
    """Copy every file the catalogue refers to into another backend and verify each by its SHA-256.

    Source: the storage configured now. Destination: the same settings with --to as BLOGIMG_STORAGE and --to-path, --to-bucket or --to-prefix as its place; credentials (AWS_*, CLOUDINARY_URL, BLOB_READ_WRITE_TOKEN) come from the environment as usual.

    Only files the catalogue refers to are copied (masters, thumbnails, variants); orphans stay behind.

    Nothing is switched: once every file is verified it prints the settings to change. Interrupted? Run it again: files already copied and verified are skipped. Images made while it runs may be missed: stop the workers, or run it once more just before switching.
    """

    def work() -> None:
        source_settings = _existing_catalogue(load_settings())
        destination_settings = destination(source_settings, to=to, path=to_path, bucket=to_bucket, prefix=to_prefix)
        _run(source_settings, destination_settings, concurrency)

    guarded(work)


def destination(settings: Settings, *, to: str, path: Path | None, bucket: str | None,
                prefix: str | None) -> Settings:
    """The source's settings moved to backend ``to`` at the given place; InputError for options that
    do not fit ``to`` and for a destination that is the source."""
    if to not in DESTINATIONS:
        raise InputError(f"--to {to!r}: use one of {', '.join(DESTINATIONS)}")
    if path is not None and to != "local":
        raise InputError("--to-path is for --to local")
    if bucket is not None and to != "s3":
        raise InputError("--to-bucket is for --to s3")
    if prefix is not None and to not in PREFIXED:
        raise InputError(f"--to-prefix is for --to {', '.join(PREFIXED)}")
    changes: dict[str, Any] = {"storage": to}
    if path is not None:
        changes["storage_path"] = path
    if bucket is not None:
        changes["storage_bucket"] = bucket
    if prefix is not None:
        changes["storage_prefix"] = prefix
    moved = settings.model_copy(update=changes)  # each value is of its field's type: nothing to validate
    if to == "s3" and not moved.storage_bucket:
        raise InputError("--to s3 needs a bucket: pass --to-bucket (or set BLOGIMG_STORAGE_BUCKET)")
    if _place(moved) == _place(settings):
        raise InputError(f"the destination is the storage configured now ({_describe(settings)}): "
                         "name another with --to-path, --to-bucket or --to-prefix")
    return moved


def switch_settings(settings: Settings) -> list[str]:
    """The variables that make ``settings``' storage the one in use."""
    lines = [f"BLOGIMG_STORAGE={settings.storage}"]
    if settings.storage == "local":
        lines.append(f"BLOGIMG_STORAGE_PATH={settings.storage_path.resolve()}")
    if settings.storage == "s3":
        lines.append(f"BLOGIMG_STORAGE_BUCKET={settings.storage_bucket or ''}")
    if settings.storage in PREFIXED:
        lines.append(f"BLOGIMG_STORAGE_PREFIX={settings.storage_prefix}")
    return lines


def _place(settings: Settings) -> tuple[str, ...]:
    # Every backend reads /blog, blog and blog/ as the one folder blog/: so must the comparison.
    prefix = settings.storage_prefix.strip("/")
    if settings.storage == "local":
        return ("local", str(settings.storage_path.resolve()))
    if settings.storage == "s3":
        return ("s3", settings.storage_bucket or "", prefix)
    return (settings.storage, prefix)


def _describe(settings: Settings) -> str:
    """Where ``settings`` keep files, in words."""
    if settings.storage == "local":
        return f"the folder {settings.storage_path.resolve()}"
    where = f"S3 bucket {settings.storage_bucket or '(none set)'}" if settings.storage == "s3" else settings.storage
    return where + (f" under {settings.storage_prefix}" if settings.storage_prefix else "")


def _existing_catalogue(settings: Settings) -> Settings:
    from blogimg.db.engine import sqlite_file

    path = sqlite_file(settings.database_url)
    if path is not None and not path.exists():
        raise ConfigurationError(f"no catalogue at {path.resolve()}: point BLOGIMG_DATABASE_URL at the "
                                 "library to move")
    return settings


def _run(source_settings: Settings, destination_settings: Settings, concurrency: int) -> None:
    from blogimg.db.database import Database
    from blogimg.pipeline import migrate_storage as migration
    from blogimg.storage.factory import build_storage

    source = build_storage(source_settings, writable=False)  # only read from
    target = build_storage(destination_settings)
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=console)

    async def run() -> MigrationReport:
        database = await Database.open(source_settings.database_url)
        try:
            total = sum((await database.reporting.status_counts()).values())
            task = progress.add_task("images", total=total, status="")

            def advance(report: MigrationReport) -> None:
                status = f"[red]{len(report.failures)} failed[/]" if report.failures else ""
                progress.update(task, completed=report.images, status=status)

            with progress:
                return await migration.migrate_storage(database.catalog, source, target,
                                                       concurrency=concurrency, on_image=advance)
        finally:
            await database.close()

    try:
        report = asyncio.run(run())
    except KeyboardInterrupt:
        errors.print("interrupted: nothing was switched; run the same command again to finish "
                     "(files already copied and verified are skipped)")
        raise typer.Exit(code=130) from None
    _print_report(report, destination_settings)


def _print_report(report: MigrationReport, destination_settings: Settings) -> None:
    where = _describe(destination_settings)
    console.print(f"{report.images} images: {report.verified} files verified in {escape(where)} "
                  f"({report.copied} copied now, {report.already_there} already there, "
                  f"{report.bytes_copied:,} bytes)", highlight=False)
    if report.failures:
        for failure in report.failures[:SHOWN_FAILURES]:
            errors.print(f"image {failure.image_id}: {escape(failure.key)}: {escape(failure.reason)}",
                         highlight=False)
        if len(report.failures) > SHOWN_FAILURES:
            errors.print(f"… and {len(report.failures) - SHOWN_FAILURES} more", highlight=False)
        errors.print(f"error: {len(report.failures)} files are not in the destination; nothing was switched. "
                     "Fix what is listed (a file missing from the source: 'blogimg cleanup --repair') "
                     "and run the command again", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1)
    console.print("every file is copied and verified; nothing was switched yet. To use the new storage, "
                  "set (in the environment or blogimg.toml) and restart every blogimg process:", highlight=False)
    for line in switch_settings(destination_settings):
        console.print(f"  {escape(line)}", highlight=False, soft_wrap=True)
    if destination_settings.cdn_base_url:
        console.print(f"  and point the CDN at BLOGIMG_CDN_BASE_URL={escape(destination_settings.cdn_base_url)} "
                      "to the new storage (or change that setting)", highlight=False)
