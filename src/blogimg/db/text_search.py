"""The search endpoint's text filter, answered from trigram indexes where they exist.

A substring filter (prompt or alt text contains the phrase) cannot use a B-tree. Newest-first
scanning finds a common phrase within the first few hundred rows, but a rare one means reading
every row: ~0.5 s at a million images. Migration 0004 adds trigram indexes (FTS5 on SQLite,
pg_trgm on PostgreSQL), and this module asks them first for the ids that match. When they find
no more than ``LIMIT`` images (and prompts standing for no more than ``PROMPT_IMAGES`` images),
the page is read from those ids; when they find more, the phrase is common and the scan fills a
page quickly, so the scan is used. Phrases the indexes cannot
answer (under three characters; on SQLite, with LIKE's own wildcards in them) are scanned too.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, false, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from blogimg.db.tables import GeneratedImage

LIMIT = 2000  #: most matching images, or prompts, read by id; beyond it the scan is the faster plan
PROMPT_IMAGES = 20_000  #: most images of the matching prompts read through the prompt_id index
_MINIMUM = 3  #: trigram indexes cannot narrow a shorter phrase

_SQLITE = {
    "alt_text": "SELECT rowid FROM generated_images_text WHERE alt_text LIKE :pattern LIMIT :limit",
    "prompt": "SELECT rowid FROM image_prompts_text WHERE prompt LIKE :pattern LIMIT :limit",
}
_POSTGRESQL = {
    "alt_text": "SELECT id FROM generated_images WHERE alt_text ILIKE :pattern LIMIT :limit",
    "prompt": "SELECT id FROM image_prompts WHERE prompt ILIKE :pattern LIMIT :limit",
}


class TextIndex:
    """Which trigram indexes this database has (looked up once), and the ids they match."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.dialect = engine.dialect.name
        self._available: bool | None = None

    async def condition(self, session: AsyncSession, phrase: str, pattern: str) -> ColumnElement[bool] | None:
        """The images whose prompt or alt text contains ``phrase``, by id; or None: scan instead.

        ``pattern`` is the phrase as an escaped LIKE pattern, for PostgreSQL; SQLite's FTS5 cannot
        use its index with an ESCAPE clause, so there phrases with wildcards in them are scanned.
        """
        if len(phrase) < _MINIMUM or not await self._has_indexes(session):
            return None
        if self.dialect == "sqlite":
            if any(character in phrase for character in "%_\\"):
                return None
            statements, pattern = _SQLITE, f"%{phrase}%"
        else:
            statements = _POSTGRESQL
        arguments = {"pattern": pattern, "limit": LIMIT + 1}
        images = list(await session.scalars(text(statements["alt_text"]), arguments))
        prompts = list(await session.scalars(text(statements["prompt"]), arguments))
        if len(images) > LIMIT or len(prompts) > LIMIT:
            return None
        if prompts:
            # A few prompts may stand for many images (variations, re-runs): read them through the
            # prompt_id index only while sorting them stays cheaper than scanning.
            by_prompt = select(GeneratedImage.id).where(GeneratedImage.prompt_id.in_(prompts)).limit(PROMPT_IMAGES + 1)
            counted = await session.execute(select(func.count()).select_from(by_prompt.subquery()))
            if counted.scalar_one() > PROMPT_IMAGES:
                return None
        parts = [GeneratedImage.id.in_(images)] if images else []
        parts += [GeneratedImage.prompt_id.in_(prompts)] if prompts else []
        return or_(*parts) if parts else false()

    async def _has_indexes(self, session: AsyncSession) -> bool:
        if self._available is None:
            if self.dialect == "sqlite":
                query = ("SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                         "AND name IN ('generated_images_text', 'image_prompts_text')")
            elif self.dialect == "postgresql":
                query = ("SELECT count(*) FROM pg_indexes WHERE indexname IN "
                         "('ix_generated_images_text_trgm', 'ix_image_prompts_text_trgm')")
            else:
                self._available = False
                return False
            self._available = await session.scalar(text(query)) == 2
        return self._available
