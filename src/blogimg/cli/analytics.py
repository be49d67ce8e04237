"""``blogimg stats --by day|month|provider``: spend and images grouped one way, storage by format
and ratings, as tables or (``--json``) as the JSON ``GET /api/analytics`` answers."""

from __future__ import annotations

import asyncio
import dataclasses
import json

from rich.markup import escape
from rich.table import Table

from blogimg.cli.output import console
from blogimg.config import Settings
from blogimg.db.analytics import Analytics, AnalyticsReport, Grouping, SpendRow


def print_analytics(settings: Settings, grouping: Grouping, days: int | None, as_json: bool) -> None:
    report = asyncio.run(_read(settings, grouping, days))
    if as_json:
        # Plain print: Rich would wrap long lines and colour the JSON that scripts parse.
        print(json.dumps(dataclasses.asdict(report), indent=2))
        return
    title = {"day": "UTC day", "month": "UTC month", "provider": "provider"}[grouping]
    table = Table(title=f"spend by {title}" + (f" since {report.since}" if report.since else ""))
    for column in (title, "calls", "ok", "cost", "accepted", "failed", "$/accepted", "calls/accepted",
                   "regeneration"):
        table.add_column(column, justify="left" if column == title else "right")
    for row in [*report.rows, report.total]:
        table.add_row(*_cells(row), end_section=row is report.rows[-1] if report.rows else False)
    console.print(table)
    storage = Table(title="storage by format")
    for column in ("file", "format", "files", "stored", "original", "saved"):
        storage.add_column(column, justify="left" if column in ("file", "format") else "right")
    for item in report.storage:
        storage.add_row(item.role, item.format, f"{item.files:,}", f"{item.bytes_stored:,}",
                        "" if item.bytes_original is None else f"{item.bytes_original:,}",
                        "" if item.bytes_saved is None else f"{item.bytes_saved:,}")
    console.print(storage if report.storage else "no stored files")
    ratings = Table(title="ratings")
    for column in ("provider", "model", "rated", "mean", "1–5"):
        ratings.add_column(column, justify="left" if column in ("provider", "model") else "right")
    for rating in report.ratings:
        ratings.add_row(escape(rating.provider), escape(rating.model), str(rating.rated_images),
                        f"{rating.mean_rating:.2f}", " ".join(str(rating.counts.get(n, 0)) for n in range(1, 6)))
    console.print(ratings if report.ratings else "no rated images")


async def _read(settings: Settings, grouping: Grouping, days: int | None) -> AnalyticsReport:
    from blogimg.db.database import Database

    database = await Database.open(settings.database_url)
    try:
        return await Analytics(database.engine).report(grouping, days)
    finally:
        await database.close()


def _cells(row: SpendRow) -> list[str]:
    unknown = f" + {row.unknown_cost_calls} unknown" if row.unknown_cost_calls else ""
    return [escape(row.key), f"{row.calls:,}", f"{row.ok_calls:,}", f"${row.cost_usd:.4f}{unknown}",
            f"{row.accepted_images:,}", f"{row.failed_images:,}",
            "" if row.cost_per_accepted_image is None else f"${row.cost_per_accepted_image:.4f}",
            "" if row.calls_per_accepted_image is None else f"{row.calls_per_accepted_image:.2f}",
            "" if row.regeneration_rate is None else f"{row.regeneration_rate:.1%}"]
