"""Budgets checked against the ledger before a call: pending calls count at their estimate,
finished ones at their cost, and a refusal falls back to a provider that fits."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from blogimg.config import Settings
from blogimg.db.jobs import PostsToEnqueue
from blogimg.db.ledger import Spending
from blogimg.db.tables import GeneratedImage, GenerationAttempt
from blogimg.domain import AttemptRecord, Outcome
from blogimg.errors import BudgetExceededError
from blogimg.pipeline.budget import Budget
from blogimg.pipeline.generate import generate
from blogimg.prompts.extract import PromptExtractor
from blogimg.storage import MemoryStorage
from blogimg.testing import FakeProvider
from tests.support import on_both_engines, registry_with, write_posts


@on_both_engines
async def test_a_pending_call_counts_at_its_estimate_and_a_finished_one_at_its_cost(database) -> None:
    image_id = await _an_image(database)
    ledger = database.ledger
    first = await ledger.open_attempt(image_id, owner="t", provider="p", model="m", number=1, estimate=0.5)
    assert (await ledger.spending()).this_month == pytest.approx(0.5)
    await ledger.close_attempt(first, AttemptRecord(1, "p", "m", Outcome.OK, 10, 0.3))
    await ledger.open_attempt(image_id, owner="t", provider="p", model="m", number=2, estimate=0.2)
    assert await ledger.spending() == Spending(today=pytest.approx(0.5), this_month=pytest.approx(0.5))
    budget = Budget(daily_usd=0.6)
    with pytest.raises(BudgetExceededError, match="daily budget"):
        await ledger.open_attempt(image_id, owner="t", provider="p", model="m", number=3,
                                  estimate=0.11, budget=budget)
    await ledger.open_attempt(image_id, owner="t", provider="p", model="m", number=3, estimate=0.1, budget=budget)
    with pytest.raises(BudgetExceededError, match="monthly budget"):
        await ledger.open_attempt(image_id, owner="t", provider="p", model="m", number=4, estimate=0.01,
                                  budget=Budget(daily_usd=5, monthly_usd=0.6))
    with pytest.raises(BudgetExceededError, match="price is unknown"):
        await ledger.open_attempt(image_id, owner="t", provider="p", model="m", number=4, estimate=None,
                                  budget=Budget(daily_usd=5))
    async with database.sessions() as session:
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


async def _an_image(database) -> int:
    post = PromptExtractor().extract("---\ntitle: Budget\n---\nbody\n", source="budget.md", default_slug="budget")
    await database.queue.enqueue(PostsToEnqueue([post]))
    async with database.sessions() as session:
        return await session.scalar(select(GeneratedImage.id))
