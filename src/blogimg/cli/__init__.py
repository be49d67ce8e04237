"""The ``blogimg`` command line: ``app`` (Typer) and ``main``, the console-script entry point."""

from blogimg.cli.app import app, main

__all__ = ["app", "main"]
