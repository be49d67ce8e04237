"""The ``blogimg`` command: init, generate, stats, providers.

Errors are one line on stderr and a non-zero exit; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from pydantic_settings import SettingsError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from blogimg.config import Settings
from blogimg.domain import EventKind, ProgressEvent, RunSummary
from blogimg.errors import BlogimgError

app = typer.Typer(help="Give blog posts their images.", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False)
console = Console()
errors = Console(stderr=True)
_state = {"debug": False}


@app.callback()
def main_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
) -> None:
    _state["debug"] = debug
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


@app.command()
def init() -> None:
    """Create the data directories and the database (safe to run again)."""
    from blogimg.db.engine import open_database
    from blogimg.storage.factory import build_storage

    def work() -> None:
        settings = _settings()
        build_storage(settings)

        async def migrate() -> None:
            engine, _ = await open_database(settings.database_url)
            await engine.dispose()

        asyncio.run(migrate())
        console.print(f"database ready: {settings.database_url}")
        if settings.storage == "local":
            console.print(f"images go to: {settings.storage_path.resolve()}")

    _guard(work)


@app.command()
def generate(
    paths: Annotated[list[Path], typer.Argument(help="Markdown files or directories of posts.")],
    providers: Annotated[str | None, typer.Option(help="Comma-separated fallback order, e.g. openai,card.")] = None,
    max_concurrent: Annotated[int | None, typer.Option(min=1, max=64, help="Images made at once.")] = None,
) -> None:
    """Extract prompts from posts, generate, optimize and store every image they still need."""
    from blogimg.pipeline.generate import generate as run_generate

    def work() -> None:
        overrides: dict[str, Any] = {}
        if max_concurrent is not None:
            overrides["max_concurrent"] = max_concurrent
        settings = _settings(**overrides)
        chosen = [name.strip() for name in providers.split(",") if name.strip()] if providers else None
        with _ProgressDisplay() as display:
            summary = asyncio.run(run_generate(paths, settings, providers=chosen, on_event=display.handle))
        _print_summary(summary)
        if summary.failed:
            raise typer.Exit(code=1)

    _guard(work)


@app.command()
def worker(
    providers: Annotated[str | None, typer.Option(help="Comma-separated fallback order, e.g. openai,card.")] = None,
    concurrency: Annotated[int | None, typer.Option(min=1, max=64, help="Images made at once by this process.")] = None,
) -> None:
    """Work the queue until SIGTERM/SIGINT (run as many as you like, on as many machines)."""
    from blogimg.pipeline.runtime import run_workers

    def work() -> None:
        settings = _settings()
        chosen = [name.strip() for name in providers.split(",") if name.strip()] if providers else None

        def report(event: ProgressEvent) -> None:
            if event.kind in (EventKind.SUCCEEDED, EventKind.FAILED):
                console.log(f"image {event.image_id} {event.kind.value}: {escape(event.detail)}", highlight=False)

        console.log(f"worker {os.getpid()} started; stop with SIGTERM (twice to give jobs back at once)")
        done, released = asyncio.run(run_workers(settings, providers=chosen, on_event=report,
                                                 concurrency=concurrency))
        console.log(f"worker {os.getpid()} stopped after {done} images; gave {released} back to the queue")

    _guard(work)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    worker: Annotated[bool, typer.Option(help="Run an embedded worker that drains the queue.")] = True,
    insecure: Annotated[bool, typer.Option(help="Allow a non-loopback address without API keys.")] = False,
) -> None:
    """The REST API (and, by default, a worker) on HOST:PORT; OpenAPI at /openapi.json."""

    def work() -> None:
        settings = _settings()
        if not settings.api_keys and not insecure and not _is_loopback(host):
            raise BlogimgError(
                f"refusing to listen on {host} with no API keys: anyone could change things. "
                "Set BLOGIMG_API_KEYS, listen on 127.0.0.1, or pass --insecure")
        try:
            import uvicorn

            from blogimg.api.app import create_app
        except ImportError as error:
            raise BlogimgError(f"serve needs the server extra ({error.name}): pip install 'blogimg[server]'") from None
        console.log(f"blogimg API on http://{host}:{port} (docs at /docs){' with a worker' if worker else ''}")
        uvicorn.run(create_app(settings, run_worker=worker), host=host, port=port, log_level="info")

    _guard(work)


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@app.command()
def stats() -> None:
    """Images by status and provider, cost and bytes saved."""
    from blogimg.db.engine import open_database
    from blogimg.db.repository import Repository

    def work() -> None:
        settings = _settings()

        async def read() -> dict:
            engine, sessions = await open_database(settings.database_url)
            try:
                return await Repository(engine, sessions).stats()
            finally:
                await engine.dispose()

        data = asyncio.run(read())
        table = Table(title=f"blogimg — {data['posts']} posts")
        table.add_column("status")
        table.add_column("images", justify="right")
        for status, count in data["by_status"].items():
            table.add_row(status, str(count))
        console.print(table)
        providers = Table(title="provider calls")
        for column in ("provider", "calls", "ok", "cost", "mean latency"):
            providers.add_column(column, justify="left" if column == "provider" else "right")
        for row in data["by_provider"]:
            cost = _money(row["cost_usd"], row["unknown_cost_calls"])
            providers.add_row(row["provider"], str(row["calls"]), str(row["ok"]), cost,
                              f"{row['mean_latency_ms']} ms")
        console.print(providers)
        console.print(_bytes_line(data["bytes_original"], data["bytes_stored"]))

    _guard(work)


@app.command(name="providers")
def list_providers() -> None:
    """Which providers exist, which are configured, their models, and what an image costs."""
    from blogimg.providers.pricing import default_prices
    from blogimg.providers.registry import ProviderRegistry

    def work() -> None:
        settings = _settings()
        registry, prices = ProviderRegistry(), default_prices()
        order = settings.providers or registry.default_order()
        table = Table(title="providers (fallback order: " + " → ".join(order) + ")",
                      caption=f"list prices per image at quality '{settings.quality}', as of {prices.as_of}; "
                              "unknown prices are recorded as unknown, never $0")
        for column in ("name", "configured", "model", "price per image", "needs"):
            table.add_column(column, overflow="fold")
        for name in registry.names():
            try:
                info = registry.info(name)
            except BlogimgError as error:
                table.add_row(name, "[red]unavailable[/]", "", "", escape(str(error)))
                continue
            configured = "[green]yes[/]" if registry.is_configured(name) else "[yellow]no[/]"
            needs = " or ".join(info.key_env_vars) if info.needs_key else "nothing (offline)"
            missing = registry.missing_modules(name)
            if missing:
                configured = "[red]SDK missing[/]"
                needs = escape(f"pip install 'blogimg[{info.extra or name}]'; then {needs}")
            model = {"openai": settings.openai_model, "google": settings.google_model}.get(name, info.models[0])
            others = len([m for m in info.models if m != model])
            table.add_row(name, configured, model + (f" (+{others} more)" if others else ""),
                          _price_range(prices, name, model, settings.quality), needs)
        console.print(table)

    _guard(work)


def _price_range(prices: Any, provider: str, model: str, quality: str) -> str:
    known = sorted(p.usd for p in prices.image_prices(provider, model) if p.quality in (quality, "*"))
    if not known:
        return "[yellow]unknown[/]"
    low, high = known[0], known[-1]
    return f"${low:.3f}" if low == high else f"${low:.3f}–${high:.3f}"


class _ProgressDisplay:
    """A Rich progress bar fed by the pipeline's events."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
            console=console, transient=False,
        )
        self.task = self.progress.add_task("images", total=None, status="")
        self.failed = 0

    def __enter__(self) -> _ProgressDisplay:
        # The bar appears once work is queued, so a run refused up front prints only its error.
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.progress.live.is_started:
            self.progress.stop()

    def handle(self, event: ProgressEvent) -> None:
        if event.kind is EventKind.QUEUED:
            self.progress.start()
            self.progress.update(self.task, total=event.total,
                                 status="nothing to do" if not event.total else "")
        elif event.kind in (EventKind.SUCCEEDED, EventKind.FAILED):
            self.failed += event.kind is EventKind.FAILED
            status = f"[red]{self.failed} failed[/]" if self.failed else ""
            self.progress.update(self.task, completed=event.done, status=status)
        elif event.kind is EventKind.ATTEMPT and event.attempt and event.attempt.outcome != "ok":
            attempt = event.attempt
            self.progress.console.log(
                f"image {event.image_id}: {attempt.provider} call {attempt.attempt} ended "
                f"{attempt.outcome.value}: {escape(attempt.error or '')}", highlight=False)


def _print_summary(summary: RunSummary) -> None:
    table = Table(title="blogimg generate — summary", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("posts", f"{summary.posts} ({summary.opted_out} opted out)")
    table.add_row("images needed", str(summary.prompts))
    table.add_row("already made", str(summary.already_done))
    table.add_row("generated now", f"[green]{summary.succeeded}[/]")
    table.add_row("failed", f"[red]{summary.failed}[/]" if summary.failed else "0")
    table.add_row("provider calls", str(summary.provider_calls))
    table.add_row("cost", _money(summary.cost_usd, summary.unknown_cost_calls))
    table.add_row("time", f"{summary.seconds:.1f} s")
    table.add_row("bytes saved", _bytes_line(summary.bytes_original, summary.bytes_stored))
    console.print(table)
    for image_id, code, message in summary.failures[:20]:
        errors.print(f"image {image_id} failed ({code}): {message}", highlight=False)


def _money(known: float, unknown_calls: int) -> str:
    text = f"${known:.4f}"
    return text + f" + {unknown_calls} calls of unknown cost" if unknown_calls else text


def _bytes_line(original: int, stored: int) -> str:
    if not original:
        return "—"
    saved = 1 - stored / original
    return f"{_human(original)} from providers → {_human(stored)} optimized masters ({saved:.0%} saved)"


def _human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings(**overrides)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "settings"
        raise BlogimgError(f"setting BLOGIMG_{where.upper()}: {first['msg']}") from None
    except SettingsError as error:
        raise BlogimgError(f"settings: {error}") from None


def _guard(work: Callable[[], None]) -> None:
    try:
        work()
    except (typer.Exit, typer.Abort):
        raise
    except BlogimgError as error:
        if _state["debug"]:
            raise
        errors.print(f"error: {error}", highlight=False, markup=False)
        raise typer.Exit(code=2) from None
    except KeyboardInterrupt:
        errors.print("interrupted; unfinished images stay queued and resume on the next run")
        raise typer.Exit(code=130) from None
    except Exception as error:
        if _state["debug"]:
            raise
        errors.print(f"error: unexpected {type(error).__name__}: {error} (run with --debug for details)",
                     highlight=False, markup=False)
        raise typer.Exit(code=1) from None


def main() -> None:
    """Console-script entry point."""
    import blogimg.cli_catalog  # noqa: F401  (registers search, retry and cleanup)

    app(prog_name="blogimg")


if __name__ == "__main__":
    sys.exit(main())
