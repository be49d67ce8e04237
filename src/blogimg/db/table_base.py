"""What every table module shares: the declarative ``Base`` (one metadata for Alembic), times, enum columns.

Times are naive UTC datetimes written by Python, so SQLite's text storage compares correctly
and PostgreSQL's timestamps agree with it.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Dialect, MetaData, String, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    """Now, in UTC, without tzinfo (the form every table stores)."""
    return datetime.now(UTC).replace(tzinfo=None)


class EnumText(TypeDecorator[Any]):
    """A string enum stored as its value in a plain string column (the schema stays VARCHAR).

    Writing a value the enum does not have raises at once; reading gives the enum member, so
    ``Mapped[Status]`` is what the code gets, not a bare string.
    """

    impl = String(16)
    cache_ok = True

    def __init__(self, enum_type: type[enum.StrEnum]) -> None:
        super().__init__()
        self.enum_type = enum_type

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else self.enum_type(value).value

    def process_result_value(self, value: Any, dialect: Dialect) -> enum.StrEnum | None:
        return None if value is None else self.enum_type(value)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
