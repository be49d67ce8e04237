"""``python -m blogimg`` runs the CLI."""

from blogimg.cli import main

main()
