"""``blogimg export``: image manifests for a site generator, or the markup written into the posts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from blogimg.cli.output import console, guarded, load_settings
from blogimg.errors import ConfigurationError, InputError


def export(
    paths: Annotated[list[Path] | None, typer.Argument(
        help="With --format: the folder to write into (created if need be). With --write-back: the posts "
             "(files or folders; default: every post the catalogue read from a file).", show_default=False)] = None,
    format_name: Annotated[str | None, typer.Option(
        "--format", help="json, hugo, jekyll, astro or eleventy: a manifest per post in that generator's place.",
        show_default=False)] = None,
    write_back: Annotated[bool, typer.Option(
        "--write-back", help="Put each image's <picture> markup after its marker and the cover in front matter.")]
        = False,
) -> None:
    """Export each post's images (variants, srcset, LQIP, colour, alt text, markup), or write them back."""

    def work() -> None:
        from blogimg.db.database import Database
        from blogimg.db.engine import sqlite_file
        from blogimg.pipeline.export_files import ManifestExport, export_format
        from blogimg.pipeline.export_manifest import (
            PostManifest,
            each_post_manifest,
            post_manifests,
            public_url_prefix,
        )
        from blogimg.pipeline.export_write_back import write_back as write_posts
        from blogimg.pipeline.generate import extractor_for, find_post_files
        from blogimg.storage.factory import build_storage

        if write_back == (format_name is not None):
            raise InputError("give either --format FORMAT PATH or --write-back [POSTS…]")
        chosen = export_format(format_name) if format_name is not None else None
        if chosen is not None and len(paths or []) != 1:
            raise InputError("--format takes exactly one PATH: the folder to write into")
        settings = load_settings()
        database_file = sqlite_file(settings.database_url)
        if database_file is not None and not database_file.exists():
            raise ConfigurationError(f"no catalogue at {database_file.resolve()}: run 'blogimg generate' first, "
                                     "or point BLOGIMG_DATABASE_URL at one")
        storage = build_storage(settings, writable=False)

        url_prefix = public_url_prefix(storage)

        async def export_all(target: ManifestExport) -> None:
            database = await Database.open(settings.database_url)
            try:
                async for manifest in each_post_manifest(database, storage):
                    target.add(manifest)  # written as each post is read
            finally:
                await database.close()

        async def read() -> list[PostManifest]:
            database = await Database.open(settings.database_url)
            try:
                return await post_manifests(database, storage)
            finally:
                await database.close()

        if chosen is not None:
            assert paths is not None  # checked above: exactly one
            target = ManifestExport(paths[0], chosen)
            asyncio.run(export_all(target))
            report = target.finish()
            console.print(f"{chosen}: {target.posts} posts, {target.images} images; {len(report.written)} files "
                          f"written, {len(report.unchanged)} unchanged, under {escape(str(paths[0]))}",
                          highlight=False)
            return
        manifests = asyncio.run(read())
        if paths:
            posts = find_post_files(paths)
        else:
            posts = [Path(manifest.source_path) for manifest in manifests
                     if manifest.source_path and Path(manifest.source_path).is_file()]
        done = write_posts(posts, manifests, extractor_for(settings), url_prefix=url_prefix)
        for path in done.changed:
            console.print(f"changed  {escape(str(path))}", highlight=False)
        for path, note in done.notes:
            console.print(f"note     {escape(str(path))}: {escape(note)}", highlight=False)
        for path, reason in done.skipped:
            console.print(f"skipped  {escape(str(path))}: {escape(reason)}", highlight=False)
        console.print(f"write-back: {len(done.changed)} changed, {len(done.unchanged)} unchanged, "
                      f"{len(done.skipped)} skipped", highlight=False)

    guarded(work)
