"""The search endpoint's text filter: the trigram indexes (migration 0004) give exactly what a
substring scan gives, stay in step with edits and deletes, and step aside when they cannot help."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import insert, select

from blogimg.db import text_search
from blogimg.db.catalog import Catalog
from blogimg.db.tables import BlogPost, GeneratedImage, ImagePromptRow, utcnow
from blogimg.db.text_search import LIMIT
from tests.conftest import on_both_engines

pytestmark = on_both_engines

WORDS = ("Lighthouse", "harbour", "forest", "kitchen", "tea")


async def populate(catalog: Catalog, images: int, prompts: int = 20) -> None:
    started = utcnow() - timedelta(days=1)
    async with catalog.sessions.begin() as session:
        post = BlogPost(slug="search", title="Search", markdown="", summary="")
        session.add(post)
        await session.flush()
        await session.execute(insert(ImagePromptRow), [
            {"post_id": post.id, "kind": "inline", "position": n, "prompt": f"a {WORDS[n % 5]} at 50% scale, shot_{n}",
             "size": "1024x1024", "fingerprint": f"{n:064d}", "alt_hint": "", "heading": "",
             "created_at": started, "updated_at": started} for n in range(prompts)])
        prompt_ids = list(await session.scalars(select(ImagePromptRow.id).order_by(ImagePromptRow.id)))
        await session.execute(insert(GeneratedImage), [
            {"prompt_id": prompt_ids[n % prompts], "post_id": post.id, "variation": n // prompts,
             "status": "succeeded", "attempts": 1,
             "alt_text": None if n % 7 == 0 else f"{WORDS[(n + 2) % 5].upper()} under snow, frame {n}",
             "tags": [], "created_at": started + timedelta(seconds=n), "updated_at": started}
            for n in range(images)])


async def every_page(catalog: Catalog, phrase: str) -> list[int]:
    found, cursor = [], None
    while True:
        page = await catalog.search(text=phrase, provider=None, status=None, post_id=None, created_from=None,
                                    created_to=None, cursor=cursor, limit=100)
        found += [item.image.id for item in page.items]
        if not page.next_cursor:
            return found
        cursor = page.next_cursor


async def scanned(catalog: Catalog, phrase: str) -> list[int]:
    """What the filter means, computed the slow way in Python: newest first."""
    async with catalog.sessions() as session:
        prompts = dict((await session.execute(select(ImagePromptRow.id, ImagePromptRow.prompt))).all())
        rows = (await session.execute(select(GeneratedImage.id, GeneratedImage.prompt_id, GeneratedImage.alt_text)
                                      .order_by(GeneratedImage.created_at.desc(), GeneratedImage.id.desc()))).all()
    needle = phrase.lower()
    return [image_id for image_id, prompt_id, alt in rows
            if needle in prompts[prompt_id].lower() or needle in (alt or "").lower()]


async def uses_index(catalog: Catalog, phrase: str) -> bool:
    async with catalog.sessions() as session:
        return await catalog.text_index.condition(session, phrase, f"%{phrase}%") is not None


@pytest.mark.parametrize("phrase", ["frame 123", "LIGHTHOUSE under", "shot_17", "snow, frame 4", "nowhere at all",
                                    "50%", "te", "under snow", "kitchen at"])
async def test_indexed_search_finds_exactly_what_a_scan_finds(repository, phrase: str) -> None:
    catalog = Catalog(repository.engine, repository.sessions)
    await populate(catalog, 600)
    assert await every_page(catalog, phrase) == await scanned(catalog, phrase)


async def test_the_index_answers_rare_phrases_and_steps_aside_for_common_or_short_ones(repository) -> None:
    catalog = Catalog(repository.engine, repository.sessions)
    await populate(catalog, LIMIT + 500)
    assert await uses_index(catalog, "frame 1234")  # a few images: read by id
    assert await uses_index(catalog, "kitchen at")  # four prompts of twenty: ~500 images, by id
    # LIKE's own wildcards in the phrase: PostgreSQL's index takes the escaped pattern, FTS5 cannot.
    assert await uses_index(catalog, "shot_17") == (repository.engine.dialect.name == "postgresql")
    assert not await uses_index(catalog, "under snow")  # nearly every image: the scan fills a page at once
    assert not await uses_index(catalog, "te")  # too short for trigrams
    for phrase in ("frame 1234", "kitchen at", "under snow"):
        assert await every_page(catalog, phrase) == await scanned(catalog, phrase)


async def test_prompts_standing_for_too_many_images_are_scanned(repository, monkeypatch) -> None:
    catalog = Catalog(repository.engine, repository.sessions)
    await populate(catalog, 600)
    monkeypatch.setattr(text_search, "PROMPT_IMAGES", 100)
    assert not await uses_index(catalog, "kitchen at")  # four prompts, 120 images: over the cap
    assert await uses_index(catalog, "shot_3,") == (repository.engine.dialect.name == "postgresql")
    assert await every_page(catalog, "kitchen at") == await scanned(catalog, "kitchen at")


async def test_edits_and_deletes_reach_the_index(repository) -> None:
    catalog = Catalog(repository.engine, repository.sessions)
    await populate(catalog, 50)
    target = (await every_page(catalog, "frame 22"))[0]
    await catalog.update_image(target, {"alt_text": "a quiet aurora over the fjord"})
    assert await uses_index(catalog, "aurora over")
    assert await every_page(catalog, "aurora over") == [target]
    assert await every_page(catalog, "frame 22") == await scanned(catalog, "frame 22")
    assert target not in await every_page(catalog, "frame 22")
    await catalog.delete_image(target)
    assert await every_page(catalog, "aurora over") == []
