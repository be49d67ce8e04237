"""Prices (dated data, unknown is None) and budgets checked against the ledger before a call."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import select

from blogimg.config import Settings
from blogimg.db.tables import GeneratedImage, GenerationAttempt
from blogimg.domain import AttemptRecord, ImageRequest, Outcome, Size
from blogimg.errors import BudgetExceededError, ConfigurationError
from blogimg.pipeline.budget import Budget, spent_since
from blogimg.pipeline.chain import ProviderChain
from blogimg.pipeline.generate import generate
from blogimg.prompts.extract import PromptExtractor
from blogimg.providers.pricing import PriceTable, TokenUsage, default_prices
from blogimg.storage import MemoryStorage
from blogimg.testing import FakeProvider
from tests.conftest import on_both_engines
from tests.integration.test_pipeline import registry_with, write_posts

TABLE = """
as_of = "2026-01-02"
[[image]]
provider = "p"
model = "m"
prices = [{ size = "1024x1024", quality = "high", usd = 0.1 }, { size = "*", quality = "low", usd = 0.01 }]
[[tokens]]
provider = "p"
model = "m"
output_image = 40.0
"""


def test_prices_come_from_the_table_and_unknown_is_none() -> None:
    table = PriceTable.from_toml(TABLE)
    assert table.as_of == "2026-01-02"
    assert table.image_price("p", "m", "1024x1024", "high") == 0.1
    assert table.image_price("p", "m", "1536x1024", "low") == 0.01  # wildcard size
    assert table.image_price("p", "m", "1536x1024", "high") is None
    assert table.image_price("p", "other", "1024x1024", "high") is None
    assert table.token_cost("p", "m", TokenUsage(output_image=1000)) == pytest.approx(0.04)
    assert table.token_cost("p", "m", TokenUsage(output_image=1000, input_text=5)) is None  # no input price
    assert table.token_cost("q", "m", TokenUsage(output_image=1)) is None


def test_the_shipped_table_is_dated_and_prices_every_default_model() -> None:
    table, settings = default_prices(), Settings()
    datetime.strptime(table.as_of, "%Y-%m-%d")
    assert table.image_price("openai", settings.openai_model, "1024x1024", "high") is not None
    assert table.image_price("google", settings.google_model, "1024x1024", "high") is not None
    assert table.image_price("card", "card-v1", "1024x1024", "high") == 0.0


def test_a_malformed_table_is_one_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="price table"):
        PriceTable.from_toml("as_of = 1\n[[image]]\nprovider = 'p'\n")


@on_both_engines
async def test_a_pending_call_counts_at_its_estimate_and_a_finished_one_at_its_cost(repository) -> None:
    image_id = await _an_image(repository)
    first = await repository.open_attempt(image_id, owner="t", provider="p", model="m", number=1, estimate=0.5)
    async with repository.sessions() as session:
        assert await spent_since(session, datetime(2000, 1, 1)) == pytest.approx(0.5)
    await repository.close_attempt(first, AttemptRecord(1, "p", "m", Outcome.OK, 10, 0.3))
    await repository.open_attempt(image_id, owner="t", provider="p", model="m", number=2, estimate=0.2)
    async with repository.sessions() as session:
        assert await spent_since(session, datetime(2000, 1, 1)) == pytest.approx(0.5)
    budget = Budget(daily_usd=0.6)
    with pytest.raises(BudgetExceededError, match="daily budget"):
        await repository.open_attempt(image_id, owner="t", provider="p", model="m", number=3,
                                      estimate=0.11, budget=budget)
    await repository.open_attempt(image_id, owner="t", provider="p", model="m", number=3, estimate=0.1, budget=budget)
    with pytest.raises(BudgetExceededError, match="monthly budget"):
        await repository.open_attempt(image_id, owner="t", provider="p", model="m", number=4, estimate=0.01,
                                      budget=Budget(daily_usd=5, monthly_usd=0.6))
    with pytest.raises(BudgetExceededError, match="price is unknown"):
        await repository.open_attempt(image_id, owner="t", provider="p", model="m", number=4, estimate=None,
                                      budget=Budget(daily_usd=5))
    async with repository.sessions() as session:
        rows = list(await session.scalars(select(GenerationAttempt.outcome).order_by(GenerationAttempt.id)))
    assert rows == ["ok", "pending", "pending"]  # refused reservations leave no row


async def test_with_a_budget_an_unpriced_provider_is_never_called(tmp_path, settings: Settings) -> None:
    unpriced = FakeProvider("unpriced", cost_usd=None)
    posts = write_posts(tmp_path / "posts", 2, markers=0)
    summary = await generate([posts], settings.model_copy(update={"budget_monthly_usd": 100.0}),
                             providers=["unpriced"], registry=registry_with(unpriced), storage=MemoryStorage())
    assert unpriced.calls == [] and summary.failed == 2 and {f[1] for f in summary.failures} == {"budget"}


async def test_a_budget_refusal_falls_back_to_a_provider_that_fits(tmp_path, settings: Settings) -> None:
    dear, free = FakeProvider("dear", cost_usd=1.0), FakeProvider("free", cost_usd=0.0)
    posts = write_posts(tmp_path / "posts", 3, markers=0)
    summary = await generate([posts], settings.model_copy(update={"budget_daily_usd": 2.0, "max_concurrent": 1}),
                             providers=["dear", "free"], registry=registry_with(dear, free), storage=MemoryStorage())
    assert (summary.succeeded, len(dear.calls), len(free.calls)) == (3, 2, 1)
    assert summary.cost_usd == 2.0


async def test_chain_without_a_ledger_has_no_budget() -> None:
    chain = ProviderChain([FakeProvider("a", cost_usd=9.0)])
    assert (await chain.generate(ImageRequest(prompt="x", size=Size(64, 64)))).ok


async def _an_image(repository) -> int:
    post = PromptExtractor().extract("---\ntitle: Budget\n---\nbody\n", source="budget.md", default_slug="budget")
    batch = await repository.create_batch()
    await repository.save_post_and_enqueue(post, batch)
    async with repository.sessions() as session:
        return await session.scalar(select(GeneratedImage.id))
