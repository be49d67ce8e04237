"""Failed images, grouped by error code, and the failed images a filter matches (for a bulk retry).

Reads only: re-queueing is the queue's (db/queue.py). Every query starts from the
``(status, …)`` index on ``generated_images``, so it reads the failed rows, never the whole
catalogue, and each answer is bounded (so many codes, so many messages and examples per code).

A failed image usually has no ``provider`` of its own (that column names who made a succeeded
image), so "which providers" comes from the ledger: the providers called for the image.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from blogimg.db.tables import GeneratedImage, GenerationAttempt, ImagePromptRow
from blogimg.db.text_search import TextIndex
from blogimg.domain import PromptKind, Status

#: Error codes one answer lists (the rest are counted in ``other_codes``).
CODES_LIMIT = 50
#: Distinct messages shown per code, most frequent first.
MESSAGES_LIMIT = 5
#: Newest images listed per code, so each can be retried on its own.
EXAMPLES_LIMIT = 10
#: Characters of a message kept: providers can answer with pages of text.
MESSAGE_CHARACTERS = 500
#: What an image with no error code is grouped under (a row failed before codes were kept).
NO_CODE = "unknown"


@dataclass(frozen=True, slots=True)
class FailureFilter:
    """Which failed images: the search endpoint's filters (status is always ``failed``)."""

    text: str | None = None  #: in the prompt or alt text
    provider: str | None = None  #: called for the image (the ledger), or the image's own
    post_id: int | None = None
    kind: PromptKind | None = None
    created_from: datetime | None = None  #: naive UTC, inclusive
    created_to: datetime | None = None  #: naive UTC, exclusive
    error_code: str | None = None  #: one group only


@dataclass(frozen=True, slots=True)
class Counted:
    """A value (a provider, a message) and how many failed images it stands for."""

    value: str
    count: int


@dataclass(frozen=True, slots=True)
class FailedExample:
    """One failed image of a group, enough to list it and retry it."""

    image_id: int
    post_id: int
    prompt: str
    message: str | None
    failed_at: datetime | None


@dataclass(frozen=True, slots=True)
class FailureGroup:
    error_code: str
    count: int
    newest_at: datetime | None  #: when the newest of them failed
    providers: list[Counted]
    messages: list[Counted]
    examples: list[FailedExample]


@dataclass(frozen=True, slots=True)
class FailureReport:
    total: int  #: failed images the filter matches, every code counted
    groups: list[FailureGroup]  #: most images first, at most CODES_LIMIT
    other_codes: int  #: codes left out of ``groups``


class FailedImages:
    """Reads of failed images: grouped for the failures view, listed for a bulk retry."""

    def __init__(self, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self.text_index = TextIndex(engine)

    async def report(self, chosen: FailureFilter) -> FailureReport:
        """Failed images by error code: how many, which providers, the commonest messages, the newest."""
        code = func.coalesce(GeneratedImage.error_code, NO_CODE).label("code")
        async with self.sessions() as session:
            where = await self._conditions(session, chosen)
            counts = (await session.execute(
                select(code, func.count().label("images"), func.max(GeneratedImage.finished_at).label("newest"))
                .where(*where).group_by(code).order_by(func.count().desc(), code))).all()
            shown = [row.code for row in counts[:CODES_LIMIT]]
            if not shown:
                return FailureReport(total=0, groups=[], other_codes=0)
            narrowed = [*where, code.in_(shown)]
            providers = await self._providers(session, narrowed)
            messages = await self._messages(session, narrowed)
            examples = await self._examples(session, narrowed)
        groups = [FailureGroup(error_code=row.code, count=int(row.images), newest_at=row.newest,
                               providers=providers.get(row.code, []), messages=messages.get(row.code, []),
                               examples=examples.get(row.code, []))
                  for row in counts[:CODES_LIMIT]]
        return FailureReport(total=sum(int(row.images) for row in counts), groups=groups,
                             other_codes=max(0, len(counts) - CODES_LIMIT))

    async def matching_ids(self, chosen: FailureFilter, limit: int) -> list[int]:
        """Ids of the failed images the filter matches, oldest first, at most ``limit``."""
        async with self.sessions() as session:
            where = await self._conditions(session, chosen)
            return list(await session.scalars(
                select(GeneratedImage.id).where(*where).order_by(GeneratedImage.id).limit(limit)))

    # The pieces of a report ----------------------------------------------------------------

    async def _providers(self, session: AsyncSession, where: list[ColumnElement[bool]]) -> dict[str, list[Counted]]:
        code = func.coalesce(GeneratedImage.error_code, NO_CODE)
        # Distinct images per provider: a provider called three times for one image counts once.
        rows = (await session.execute(
            select(code.label("code"), GenerationAttempt.provider, func.count(GenerationAttempt.image_id.distinct()))
            .join(GenerationAttempt, GenerationAttempt.image_id == GeneratedImage.id)
            .where(*where).group_by(code, GenerationAttempt.provider))).all()
        grouped: dict[str, list[Counted]] = defaultdict(list)
        for group_code, provider, images in rows:
            grouped[group_code].append(Counted(provider, int(images)))
        return {key: sorted(values, key=lambda item: (-item.count, item.value)) for key, values in grouped.items()}

    async def _messages(self, session: AsyncSession, where: list[ColumnElement[bool]]) -> dict[str, list[Counted]]:
        code = func.coalesce(GeneratedImage.error_code, NO_CODE)
        message = func.coalesce(GeneratedImage.error_message, literal(""))
        per_message = (select(code.label("code"), message.label("message"), func.count().label("images"))
                       .where(*where).group_by(code, message).subquery())
        # A window keeps the few commonest messages of each code in the database: messages that
        # name an image or a request id are all distinct, and must not all come back.
        ranked = select(per_message, func.row_number().over(
            partition_by=per_message.c.code,
            order_by=(per_message.c.images.desc(), per_message.c.message)).label("rank")).subquery()
        rows = (await session.execute(
            select(ranked.c.code, ranked.c.message, ranked.c.images)
            .where(ranked.c.rank <= MESSAGES_LIMIT).order_by(ranked.c.code, ranked.c.rank))).all()
        grouped: dict[str, list[Counted]] = defaultdict(list)
        for group_code, text, images in rows:
            grouped[group_code].append(Counted(text[:MESSAGE_CHARACTERS], int(images)))
        return dict(grouped)

    async def _examples(self, session: AsyncSession, where: list[ColumnElement[bool]]) -> dict[str, list[FailedExample]]:
        code = func.coalesce(GeneratedImage.error_code, NO_CODE)
        ranked = (select(GeneratedImage.id, GeneratedImage.post_id, GeneratedImage.prompt_id,
                         GeneratedImage.error_message, GeneratedImage.finished_at, code.label("code"),
                         func.row_number().over(partition_by=code, order_by=(
                             GeneratedImage.finished_at.desc(), GeneratedImage.id.desc())).label("rank"))
                  .where(*where).subquery())
        rows = (await session.execute(
            select(ranked, ImagePromptRow.prompt).join(ImagePromptRow, ImagePromptRow.id == ranked.c.prompt_id)
            .where(ranked.c.rank <= EXAMPLES_LIMIT).order_by(ranked.c.code, ranked.c.rank))).all()
        grouped: dict[str, list[FailedExample]] = defaultdict(list)
        for row in rows:
            message = row.error_message[:MESSAGE_CHARACTERS] if row.error_message else None
            grouped[row.code].append(FailedExample(image_id=row.id, post_id=row.post_id, prompt=row.prompt,
                                                   message=message, failed_at=row.finished_at))
        return dict(grouped)

    # The filter ----------------------------------------------------------------------------

    async def _conditions(self, session: AsyncSession, chosen: FailureFilter) -> list[ColumnElement[bool]]:
        image = GeneratedImage
        where: list[ColumnElement[bool]] = [image.status == Status.FAILED]
        if chosen.post_id is not None:
            where.append(image.post_id == chosen.post_id)
        if chosen.created_from is not None:
            where.append(image.created_at >= chosen.created_from)
        if chosen.created_to is not None:
            where.append(image.created_at < chosen.created_to)
        if chosen.error_code is not None:
            where.append(image.error_code == chosen.error_code if chosen.error_code != NO_CODE
                         else image.error_code.is_(None))
        if chosen.kind is not None:
            where.append(image.prompt_id.in_(select(ImagePromptRow.id).where(ImagePromptRow.kind == chosen.kind.value)))
        if chosen.provider is not None:
            # Uncorrelated, so it stands alone when a report joins the ledger too; the ledger's
            # (provider, started_at) index finds the provider's calls.
            called = image.id.in_(select(GenerationAttempt.image_id).where(GenerationAttempt.provider == chosen.provider))
            where.append(or_(image.provider == chosen.provider, called))
        if chosen.text:
            where.append(await self._text_condition(session, chosen.text))
        return where

    async def _text_condition(self, session: AsyncSession, phrase: str) -> ColumnElement[bool]:
        """Prompt or alt text contains ``phrase``: the trigram indexes when they can say, else a LIKE."""
        pattern = "%" + phrase.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        indexed = await self.text_index.condition(session, phrase, pattern)
        if indexed is not None:
            return indexed
        prompts = select(ImagePromptRow.id).where(ImagePromptRow.prompt.ilike(pattern, escape="\\"))
        return or_(GeneratedImage.prompt_id.in_(prompts), GeneratedImage.alt_text.ilike(pattern, escape="\\"))
