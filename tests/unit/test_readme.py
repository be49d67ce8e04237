"""The README documents what the code offers: every command, every storage value, the request limits."""

from __future__ import annotations

import re
import typing

from blogimg.api.schemas import GenerateRequest
from blogimg.cli.app import app
from blogimg.config import Settings
from tests.support import REPOSITORY_ROOT

README = (REPOSITORY_ROOT / "README.md").read_text()


def test_every_command_has_an_example() -> None:
    # Typer spells a function's name with dashes: rebuild_rollups is `blogimg rebuild-rollups`.
    commands = {command.name or command.callback.__name__.replace("_", "-") for command in app.registered_commands
                if command.callback is not None}
    assert len(commands) >= 9
    shown = set(re.findall(r"blogimg ([\w-]+)", README))
    assert commands - shown == set()


def test_every_storage_value_is_named() -> None:
    values = typing.get_args(Settings.model_fields["storage"].annotation)
    row = next(line for line in README.splitlines() if line.startswith("| `STORAGE`"))
    assert [value for value in values if f"`{value}`" not in row] == []


def test_the_limit_on_prompts_per_request_is_stated() -> None:
    limit = GenerateRequest.model_json_schema()["properties"]["prompts"]["anyOf"][0]["maxItems"]
    row = next(line for line in README.splitlines() if "POST /api/images/generate" in line)
    assert f"at most {limit} prompts" in row
