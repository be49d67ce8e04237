"""The ``blogimg`` command: one Typer app, its commands listed here from the modules that hold them."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated

import typer

from blogimg.cli import alerts, bulk, catalogue, export, migrate, run
from blogimg.cli.output import print_error, set_debug

DEBUG_FLAG = "--debug"

app = typer.Typer(help="Give blog posts their images.", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False)


@app.callback()
def main_options(
    debug: Annotated[bool, typer.Option(DEBUG_FLAG, help="Show tracebacks and debug logs (before or after the "
                                                         "command).")] = False,
) -> None:
    # main() takes --debug out of the arguments wherever it stands; this option remains for
    # --help and for callers that invoke ``app`` directly.
    if debug:
        set_debug(True)


for command in (run.init, run.generate, run.worker, run.serve, catalogue.stats, catalogue.search,
                run.retry, catalogue.cleanup, catalogue.providers, catalogue.rebuild_rollups, migrate.migrate_storage):
    app.command()(command)
app.command()(alerts.alerts)  # alerts firing and their history
app.command()(export.export)  # manifests for site generators, markup written into posts
for bulk_command in (bulk.delete_images, bulk.remake_variants, bulk.prune_events):  # bulk actions
    app.command()(bulk_command)


def main() -> None:
    """Console-script entry point: ``--debug`` anywhere, and usage errors as one line."""
    arguments, debug = split_debug_flag(sys.argv[1:])
    set_debug(debug)
    if not arguments:
        app(args=[], prog_name="blogimg")  # no_args_is_help: Typer prints the help and exits
    try:
        result = app(args=arguments, prog_name="blogimg", standalone_mode=False)
    except typer.Abort:
        print_error("aborted")
        raise SystemExit(1) from None
    except typer.TyperException as error:  # a usage error: unknown option, bad value, missing argument
        raise SystemExit(_usage_error(error)) from None
    # Without standalone mode Typer returns an exit code instead of exiting.
    raise SystemExit(result if isinstance(result, int) else 0)


def split_debug_flag(arguments: Sequence[str]) -> tuple[list[str], bool]:
    """The arguments without ``--debug``, and whether it was there (before a ``--`` that ends options)."""
    end = arguments.index("--") if "--" in arguments else len(arguments)
    options = [argument for argument in arguments[:end] if argument != DEBUG_FLAG]
    return options + list(arguments[end:]), len(options) < end


def _usage_error(error: typer.TyperException) -> int:
    # Typer checks values with pydantic, whose prefix says nothing to a user.
    message = error.format_message().replace(": Value error, ", ": ").rstrip(".")
    context = getattr(error, "ctx", None)
    hint = f" (see {context.command_path} --help)" if context is not None else ""
    print_error(message + hint)
    return error.exit_code
