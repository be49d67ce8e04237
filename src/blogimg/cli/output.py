"""What every command shares: settings from the environment, one-line errors, progress and tables.

Errors are one line on stderr and a non-zero exit; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable
from typing import Any

import typer
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import SettingsError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from blogimg import logs
from blogimg.config import Settings, setting_origin
from blogimg.domain import EventKind, Outcome, ProgressEvent, RunSummary
from blogimg.errors import BlogimgError

console = Console()
errors = Console(stderr=True)
_debug = {"enabled": False}
_log = logging.getLogger("blogimg.cli")


def set_debug(enabled: bool) -> None:
    """``--debug``: tracebacks instead of one-line errors, and debug logs."""
    _debug["enabled"] = enabled
    # Text until the settings say otherwise (load_settings). aiosqlite logs every statement with
    # its values at DEBUG (posts' markdown, prompts): logs.configure keeps it at INFO.
    logs.configure("text", debug=enabled)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and blogimg.toml; a bad one is a BlogimgError naming it."""
    try:
        settings = Settings(**overrides)
        logs.configure(settings.log_format, debug=_debug["enabled"])
        return settings
    except ValidationError as error:
        raise BlogimgError(_settings_problem(error.errors()[0], overrides)) from None
    except SettingsError as error:
        raise BlogimgError(f"settings: {error}") from None


def _settings_problem(problem: ErrorDetails, overrides: dict[str, Any]) -> str:
    """One line naming the setting as the user gave it: option, variable, or blogimg.toml key."""
    name, *inner = [str(part) for part in problem["loc"]] or ["settings"]
    if name in overrides:
        where = "option --" + name.replace("_", "-")
    else:
        where = setting_origin(name)
    where += "".join(f"[{part}]" for part in inner)
    if problem["type"] == "extra_forbidden":  # only blogimg.toml can bring a key Settings lacks
        close = difflib.get_close_matches(name.lower(), Settings.model_fields, n=1)
        return f"{where}: unknown setting" + (f" (did you mean {close[0]}?)" if close else "")
    return f"{where}: {problem['msg'].removeprefix('Value error, ')}"


def print_error(message: str) -> None:
    """One line on stderr, never wrapped at the terminal's width (scripts grep for it)."""
    stderr_line(f"error: {message}", logging.ERROR)


def stderr_line(message: str, level: int = logging.INFO) -> None:
    """A line for stderr: as it is, or — with BLOGIMG_LOG_FORMAT=json — a JSON log line, so that
    every line on stderr is one object a collector can read."""
    if logs.is_json():
        _log.log(level, message)
    else:
        errors.print(message, highlight=False, markup=False, soft_wrap=True)


def guarded(work: Callable[[], None]) -> None:
    """Run a command's work: one clear line and a non-zero exit for every failure."""
    try:
        work()
    except (typer.Exit, typer.Abort):
        raise
    except BlogimgError as error:
        if _debug["enabled"]:
            raise
        print_error(str(error))
        raise typer.Exit(code=2) from None
    except KeyboardInterrupt:
        stderr_line("interrupted; unfinished images stay queued and resume on the next run", logging.WARNING)
        raise typer.Exit(code=130) from None
    except Exception as error:
        if _debug["enabled"]:
            raise
        from blogimg.db.failures import describe  # here, so that --help never imports SQLAlchemy

        # main() accepts --debug anywhere on the command line, so the hint holds for every command.
        # describe(): a SQL error's own message would carry the statement (and a post with it).
        print_error(f"unexpected {describe(error)} (run again with --debug for the traceback)")
        raise typer.Exit(code=1) from None


def provider_list(text: str | None) -> list[str] | None:
    """``--providers a,b`` as a list; None when not given."""
    return [name.strip() for name in text.split(",") if name.strip()] if text else None


class ProgressDisplay:
    """A Rich progress bar fed by the pipeline's events."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
            console=console, transient=False,
        )
        self.task = self.progress.add_task("images", total=None, status="")
        self.failed = 0

    def __enter__(self) -> ProgressDisplay:
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
        elif event.kind is EventKind.ATTEMPT and event.attempt and event.attempt.outcome is not Outcome.OK:
            attempt = event.attempt
            self.progress.console.log(
                f"image {event.image_id}: {attempt.provider} call {attempt.attempt} ended "
                f"{attempt.outcome.value}: {escape(attempt.error or '')}", highlight=False)


def print_summary(summary: RunSummary, title: str) -> None:
    table = Table(title=f"blogimg {title} — summary", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    if summary.posts:
        table.add_row("posts", f"{summary.posts} ({summary.opted_out} opted out)")
        table.add_row("images needed", str(summary.prompts))
        table.add_row("already made", str(summary.already_done))
    table.add_row("generated now", f"[green]{summary.succeeded}[/]")
    table.add_row("failed", f"[red]{summary.failed}[/]" if summary.failed else "0")
    table.add_row("provider calls", str(summary.provider_calls))
    table.add_row("cost", money(summary.cost_usd, summary.unknown_cost_calls))
    table.add_row("time", f"{summary.seconds:.1f} s")
    table.add_row("bytes saved", bytes_line(summary.bytes_original, summary.bytes_stored))
    console.print(table)
    for image_id, code, message in summary.failures[:20]:
        stderr_line(f"image {image_id} failed ({code}): {message}", logging.WARNING)


def money(known: float, unknown_calls: int) -> str:
    text = f"${known:.4f}"
    return text + f" + {unknown_calls} calls of unknown cost" if unknown_calls else text


def bytes_line(original: int, stored: int) -> str:
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
