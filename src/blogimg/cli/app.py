"""The ``blogimg`` command: one Typer app, its commands listed here from the modules that hold them."""

from __future__ import annotations

from typing import Annotated

import typer

from blogimg.cli import catalogue, run
from blogimg.cli.output import set_debug

app = typer.Typer(help="Give blog posts their images.", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False)


@app.callback()
def main_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
) -> None:
    set_debug(debug)


for command in (run.init, run.generate, run.worker, run.serve, catalogue.stats, catalogue.search,
                run.retry, catalogue.cleanup, catalogue.providers):
    app.command()(command)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="blogimg")
