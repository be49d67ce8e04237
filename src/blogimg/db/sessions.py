"""Page sign-ins kept in the catalogue: every ``serve`` process sees them, and they outlive restarts.

The cookie carries a random token; the table keeps only a hash of it (api/auth.py makes both),
so a copy of the table signs nobody in. A session ends when it expires, when it is revoked
(sign-out), or — checked by the caller on every use — when the key that opened it is no longer
in the settings. Expired rows are deleted whenever someone signs in, so the table stays small
without a sweeper.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from blogimg.db.failures import reconnecting, retrying
from blogimg.db.tables import WebSession, utcnow


@dataclass(frozen=True, slots=True)
class StoredSession:
    """A live sign-in as the table holds it."""

    id: int
    role: str
    key_fingerprint: str
    created_at: datetime
    expires_at: datetime


class WebSessions:
    """Open, find and end page sign-ins."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def open(self, token_hash: str, *, role: str, key_fingerprint: str, lifetime: timedelta) -> StoredSession:
        """Record a new sign-in that lasts ``lifetime``; expired sign-ins are deleted on the way."""

        async def unit(attempt: int) -> StoredSession:
            async with self._sessions.begin() as session:
                now = utcnow()
                await session.execute(delete(WebSession).where(WebSession.expires_at <= now))
                # A try whose COMMIT was lost unseen may have stored the row already: keep that one.
                row = await _row(session, token_hash) if attempt > 1 else None
                if row is None:
                    row = WebSession(token_hash=token_hash, role=role, key_fingerprint=key_fingerprint,
                                     created_at=now, expires_at=now + lifetime)
                    session.add(row)
                    await session.flush()
                return _stored(row)

        return await retrying(unit)

    @reconnecting  # a read
    async def find(self, token_hash: str) -> StoredSession | None:
        """The unexpired sign-in whose token hashes to ``token_hash``, if any."""
        async with self._sessions() as session:
            row = await _row(session, token_hash)
            return _stored(row) if row is not None and row.expires_at > utcnow() else None

    @reconnecting  # deleting twice deletes once
    async def revoke(self, token_hash: str) -> bool:
        """End the sign-in (sign-out); False when there was none."""
        async with self._sessions.begin() as session:
            result = await session.execute(delete(WebSession).where(WebSession.token_hash == token_hash))
            return bool(getattr(result, "rowcount", 0))


async def _row(session: AsyncSession, token_hash: str) -> WebSession | None:
    row: WebSession | None = await session.scalar(select(WebSession).where(WebSession.token_hash == token_hash))
    return row


def _stored(row: WebSession) -> StoredSession:
    return StoredSession(id=row.id, role=row.role, key_fingerprint=row.key_fingerprint,
                         created_at=row.created_at, expires_at=row.expires_at)
