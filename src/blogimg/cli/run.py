"""Commands that make images or serve: ``init``, ``generate``, ``retry``, ``worker``, ``serve``.

Heavy modules are imported inside the commands, so ``blogimg --help`` stays fast.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from blogimg.cli.output import (
    ProgressDisplay,
    console,
    guarded,
    load_settings,
    print_summary,
    provider_list,
)
from blogimg.domain import EventKind, ProgressEvent
from blogimg.errors import BlogimgError, InputError

ProvidersOption = Annotated[str | None, typer.Option(help="Comma-separated fallback order, e.g. openai,card.")]


def init() -> None:
    """Create the data directories and the database (safe to run again)."""
    from blogimg.db.database import Database
    from blogimg.storage.factory import build_storage

    def work() -> None:
        settings = load_settings()
        build_storage(settings)

        async def migrate() -> None:
            await (await Database.open(settings.database_url)).close()

        asyncio.run(migrate())
        console.print(f"database ready: {settings.database_url}")
        if settings.storage == "local":
            console.print(f"images go to: {settings.storage_path.resolve()}")

    guarded(work)


def generate(
    paths: Annotated[list[Path], typer.Argument(help="Markdown files or directories of posts.")],
    providers: ProvidersOption = None,
    max_concurrent: Annotated[int | None, typer.Option(min=1, max=64, help="Images made at once.")] = None,
) -> None:
    """Extract prompts from posts, generate, optimize and store every image they still need."""
    from blogimg.pipeline.generate import generate as run_generate

    def work() -> None:
        overrides: dict[str, Any] = {}
        if max_concurrent is not None:
            overrides["max_concurrent"] = max_concurrent
        settings = load_settings(**overrides)
        with ProgressDisplay() as display:
            summary = asyncio.run(run_generate(paths, settings, providers=provider_list(providers),
                                               on_event=display.handle))
        print_summary(summary, "generate")
        if summary.failed:
            raise typer.Exit(code=1)

    guarded(work)


def retry(
    image_ids: Annotated[list[int] | None, typer.Argument(help="Images to make again (failed ones).")] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Every failed image.")] = False,
    batch: Annotated[int | None, typer.Option("--batch", min=1, max=2**31 - 1,
                                              help="Every failed image of this batch.")] = None,
    post: Annotated[int | None, typer.Option("--post", min=1, max=2**31 - 1,
                                             help="Every failed image of this post.")] = None,
) -> None:
    """Queue failed images again and make them now (embedded worker, as ``generate`` does)."""
    from blogimg.pipeline.generate import retry as run_retry

    def work() -> None:
        if not image_ids and not failed and batch is None and post is None:
            raise InputError("name the image ids to retry, or pass --failed (every failed image), --batch or --post")
        if sum((bool(image_ids), failed, batch is not None, post is not None)) > 1:
            raise InputError("give image ids, --failed, --batch or --post: one of them")
        settings = load_settings()
        chosen = image_ids or None
        if batch is not None or post is not None:
            from blogimg.cli.bulk import failed_image_ids

            chosen = failed_image_ids(settings, batch_id=batch, post_id=post)
        with ProgressDisplay() as display:
            summary = asyncio.run(run_retry(settings, chosen, on_event=display.handle))
        print_summary(summary, "retry")
        if summary.failed:
            raise typer.Exit(code=1)

    guarded(work)


def worker(
    providers: ProvidersOption = None,
    concurrency: Annotated[int | None, typer.Option(min=1, max=64, help="Images made at once by this process.")] = None,
) -> None:
    """Work the queue until SIGTERM/SIGINT (run as many as you like, on as many machines)."""
    from blogimg.pipeline.runtime import run_workers

    def work() -> None:
        settings = load_settings()

        def report(event: ProgressEvent) -> None:
            if event.kind in (EventKind.SUCCEEDED, EventKind.FAILED):
                console.log(f"image {event.image_id} {event.kind.value}: {escape(event.detail)}", highlight=False)

        console.log(f"worker {os.getpid()} started; stop with SIGTERM (twice to give jobs back at once)")
        done, released = asyncio.run(run_workers(settings, providers=provider_list(providers), on_event=report,
                                                 concurrency=concurrency))
        console.log(f"worker {os.getpid()} stopped after {done} images; gave {released} back to the queue")

    guarded(work)


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    worker: Annotated[bool, typer.Option(help="Run an embedded worker that drains the queue.")] = True,
    insecure: Annotated[bool, typer.Option(help="Allow a non-loopback address without API keys.")] = False,
) -> None:
    """The REST API (and, by default, a worker) on HOST:PORT; OpenAPI at /openapi.json.

    Slow clients are cut off and open connections capped (BLOGIMG_SERVER_* settings).
    """

    def work() -> None:
        settings = load_settings()
        if not (settings.api_keys or settings.api_read_keys) and not insecure and not _is_loopback(host):
            raise BlogimgError(
                f"refusing to listen on {host} with no API keys: anyone could change things. "
                "Set BLOGIMG_API_KEYS, listen on 127.0.0.1, or pass --insecure")
        try:
            from blogimg.api.app import create_app
            from blogimg.api.server import ServerLimits, run_server
        except ImportError as error:
            raise BlogimgError(f"serve needs the server extra ({error.name}): pip install 'blogimg[server]'") from None
        console.log(f"blogimg on http://{host}:{port}: the status page at /, the API under /api (docs at /docs)"
                    f"{', with a worker' if worker else ''}")
        run_server(create_app(settings, run_worker=worker), host=host, port=port,
                   limits=ServerLimits.from_settings(settings))

    guarded(work)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
