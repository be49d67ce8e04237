"""The search endpoint's text filter: the trigram indexes (migration 0004) give exactly what a
substring scan gives, stay in step with edits and deletes, and step aside when they cannot help."""

from __future__ import annotations

import pytest

from blogimg.db import text_search
from blogimg.db.catalog import Catalog
from blogimg.db.text_search import LIMIT
from tests.support import every_page, on_both_engines, populate, scanned, uses_index

pytestmark = on_both_engines


@pytest.mark.parametrize("phrase", ["frame 123", "LIGHTHOUSE under", "shot_17", "snow, frame 4", "nowhere at all",
                                    "50%", "te", "under snow", "kitchen at"])
async def test_indexed_search_finds_exactly_what_a_scan_finds(database, phrase: str) -> None:
    catalog = Catalog(database.engine, database.sessions)
    await populate(catalog, 600)
    assert await every_page(catalog, phrase) == await scanned(catalog, phrase)


async def test_the_index_answers_rare_phrases_and_steps_aside_for_common_or_short_ones(database) -> None:
    catalog = Catalog(database.engine, database.sessions)
    await populate(catalog, LIMIT + 500)
    assert await uses_index(catalog, "frame 1234")  # a few images: read by id
    assert await uses_index(catalog, "kitchen at")  # four prompts of twenty: ~500 images, by id
    # LIKE's own wildcards in the phrase: PostgreSQL's index takes the escaped pattern, FTS5 cannot.
    assert await uses_index(catalog, "shot_17") == (database.engine.dialect.name == "postgresql")
    assert not await uses_index(catalog, "under snow")  # nearly every image: the scan fills a page at once
    assert not await uses_index(catalog, "te")  # too short for trigrams
    for phrase in ("frame 1234", "kitchen at", "under snow"):
        assert await every_page(catalog, phrase) == await scanned(catalog, phrase)


async def test_prompts_standing_for_too_many_images_are_scanned(database, monkeypatch) -> None:
    catalog = Catalog(database.engine, database.sessions)
    await populate(catalog, 600)
    monkeypatch.setattr(text_search, "PROMPT_IMAGES", 100)
    assert not await uses_index(catalog, "kitchen at")  # four prompts, 120 images: over the cap
    assert await uses_index(catalog, "shot_3,") == (database.engine.dialect.name == "postgresql")
    assert await every_page(catalog, "kitchen at") == await scanned(catalog, "kitchen at")


async def test_edits_and_deletes_reach_the_index(database) -> None:
    catalog = Catalog(database.engine, database.sessions)
    await populate(catalog, 50)
    target = (await every_page(catalog, "frame 22"))[0]
    await catalog.update_image(target, {"alt_text": "a quiet aurora over the fjord"})
    assert await uses_index(catalog, "aurora over")
    assert await every_page(catalog, "aurora over") == [target]
    assert await every_page(catalog, "frame 22") == await scanned(catalog, "frame 22")
    assert target not in await every_page(catalog, "frame 22")
    await catalog.delete_image(target)
    assert await every_page(catalog, "aurora over") == []
