"""``blogimg alerts``: the alerts firing now and the recent history, as a table or (``--json``) as
``GET /api/alerts`` answers. The workers evaluate the rules (pipeline/alerting.py); this only reads."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from blogimg.cli.output import console, guarded, load_settings
from blogimg.config import Settings
from blogimg.db.alerts import MOST_HISTORY, AlertPage, AlertRecord, Alerts
from blogimg.db.database import Database
from blogimg.db.engine import sqlite_file
from blogimg.errors import ConfigurationError

RECENT = 20  #: history rows shown without --all


def alerts(
    show_all: Annotated[bool, typer.Option("--all", help=f"The whole history (default: the last {RECENT}).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The JSON GET /api/alerts answers.")] = False,
) -> None:
    """Alerts firing now, and the history of every alert (fired and resolved)."""

    def work() -> None:
        settings = load_settings()
        path = sqlite_file(settings.database_url)
        if path is not None and not path.exists():
            raise ConfigurationError(f"no catalogue at {path.resolve()}: point BLOGIMG_DATABASE_URL at one")
        firing, history = asyncio.run(_read(settings, show_all))
        if as_json:
            # Plain print: Rich would wrap long lines and colour the JSON that scripts parse.
            print(json.dumps({"firing": [record.as_event() for record in firing],
                              "items": [record.as_event() for record in history]}, indent=2))
            return
        if firing:
            console.print(_table(f"{len(firing)} alert{'s' if len(firing) != 1 else ''} firing", firing))
        else:
            console.print("no alert is firing")
        if history:
            title = "every alert" if show_all else f"the last {min(RECENT, len(history))} alerts"
            console.print(_table(title, history))

    guarded(work)


async def _read(settings: Settings, everything: bool) -> tuple[list[AlertRecord], list[AlertRecord]]:
    database = await Database.open(settings.database_url)
    try:
        reader = Alerts(database.engine)
        history: list[AlertRecord] = []
        page: AlertPage | None = None
        while page is None or (everything and page.next_cursor is not None):
            page = await reader.history(limit=MOST_HISTORY if everything else RECENT,
                                        cursor=page.next_cursor if page else None)
            history += page.items
        return await reader.firing(), history
    finally:
        await database.close()


def _table(title: str, records: list[AlertRecord]) -> Table:
    table = Table(title=title)
    for column in ("id", "state", "rule", "subject", "started", "resolved", "message"):
        table.add_column(column, overflow="fold", justify="right" if column == "id" else "left")
    for record in records:
        table.add_row(str(record.id), record.state, record.rule, escape(record.subject),
                      f"{record.started_at:%Y-%m-%d %H:%M:%S}",
                      f"{record.resolved_at:%Y-%m-%d %H:%M:%S}" if record.resolved_at else "",
                      escape(record.message))
    return table
