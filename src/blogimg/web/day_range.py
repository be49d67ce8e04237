"""The date filters of the gallery and failures views: UTC days read from the URL, and as the
catalogue's naive UTC bounds."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time, timedelta

NAMES = ("date_from", "date_to")


def read_days(text: Callable[[str], str | None], problems: list[str]) -> dict[str, date]:
    """``date_from`` and ``date_to`` as the view's ``text`` reader gives them; a message in ``problems``
    for each that is not a date, and for a range that ends before it starts (then both are ignored)."""
    days: dict[str, date] = {}
    for name in NAMES:
        raw = text(name)
        if raw is not None:
            try:
                days[name] = date.fromisoformat(raw)
            except ValueError:
                problems.append(f"{name.replace('_', ' ')}: a date as YYYY-MM-DD")
    if len(days) == 2 and days["date_from"] > days["date_to"]:
        problems.append("date from: on or before date to")
        return {}
    return days


def day_bounds(first: date | None, last: date | None) -> tuple[datetime | None, datetime | None]:
    """From the first day's start to the start of the day after the last (exclusive)."""
    start = datetime.combine(first, time.min) if first else None
    # No day follows date.max (9999-12-31): the range is then open at the end, as it means.
    end = datetime.combine(last + timedelta(days=1), time.min) if last and last < date.max else None
    return start, end
