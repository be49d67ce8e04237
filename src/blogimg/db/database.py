"""One open catalogue database and the objects that own its parts, opened and closed together."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from blogimg.db.attempts import AttemptHistory
from blogimg.db.catalog import Catalog
from blogimg.db.engine import open_database
from blogimg.db.failed_images import FailedImages
from blogimg.db.ledger import Ledger
from blogimg.db.posts import Posts
from blogimg.db.queue import JobQueue
from blogimg.db.reporting import Reporting
from blogimg.db.sessions import WebSessions
from blogimg.db.webhook_deliveries import Webhooks


@dataclass(frozen=True, slots=True)
class Database:
    """The engine and, over it, the queue (job state), the ledger, the catalogue and reporting."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    queue: JobQueue
    ledger: Ledger
    catalog: Catalog
    reporting: Reporting
    posts: Posts
    web_sessions: WebSessions  #: page sign-ins
    attempts: AttemptHistory  #: each image's provider calls, from the ledger
    failed_images: FailedImages  #: failures by error code; what a bulk retry matches
    webhooks: Webhooks = field(init=False)  #: webhook endpoints and the delivery log (the outbox's rows)

    def __post_init__(self) -> None:
        object.__setattr__(self, "webhooks", Webhooks(self.engine, self.sessions))

    @classmethod
    async def open(cls, database_url: str) -> Database:
        """Open (and migrate, on first use) the database at ``database_url``."""
        engine, sessions = await open_database(database_url)
        return cls(engine, sessions, JobQueue(engine, sessions), Ledger(sessions), Catalog(engine, sessions),
                   Reporting(engine, sessions), Posts(sessions), WebSessions(sessions),
                   AttemptHistory(sessions), FailedImages(engine, sessions))

    async def ping(self) -> None:
        """Raise unless the database answers."""
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()
