"""Alembic environment: blogimg runs migrations itself, handing Alembic a live connection.

``alembic`` on the command line also works: it reads BLOGIMG_DATABASE_URL.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

from blogimg.db.tables import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite can only change tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_from_url(url: str) -> None:
    from blogimg.db.engine import create_engine, lock_migrations

    engine = create_engine(url)
    async with engine.begin() as connection:
        await lock_migrations(connection)  # as blogimg's own migrations do: one at a time
        await connection.run_sync(_run)
    await engine.dispose()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    asyncio.run(_run_from_url(os.environ.get(
        "BLOGIMG_DATABASE_URL", "sqlite+aiosqlite:///./blogimg-data/blogimg.db")))
