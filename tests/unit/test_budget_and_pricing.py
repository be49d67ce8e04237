"""Prices (dated data, unknown is None), and a chain without a ledger, which has no budget.

Budgets checked against the ledger before a call need a database: tests/integration/test_budget.py.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from blogimg.config import Settings
from blogimg.db.ledger import Spending
from blogimg.domain import ImageRequest, Size
from blogimg.errors import BudgetExceededError, ConfigurationError
from blogimg.pipeline.budget import Budget
from blogimg.pipeline.chain import ProviderChain
from blogimg.providers.pricing import PriceTable, TokenUsage, default_prices
from blogimg.testing import FakeProvider

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


async def test_chain_without_a_ledger_has_no_budget() -> None:
    chain = ProviderChain([FakeProvider("a", cost_usd=9.0)])
    assert (await chain.generate(ImageRequest(prompt="x", size=Size(64, 64)))).ok


def test_a_budget_admits_a_call_only_while_both_caps_have_room() -> None:
    budget = Budget(daily_usd=1.0, monthly_usd=10.0)
    budget.check(0.4, Spending(today=0.6, this_month=5.0))  # exactly the daily cap fits
    with pytest.raises(BudgetExceededError, match=r"daily budget of \$1.00 has \$0.4000 left"):
        budget.check(0.41, Spending(today=0.6, this_month=5.0))
    with pytest.raises(BudgetExceededError, match="monthly budget"):
        budget.check(0.1, Spending(today=0.0, this_month=9.95))
    with pytest.raises(BudgetExceededError, match="price is unknown"):
        budget.check(None, Spending(today=0.0, this_month=0.0))
    Budget().check(None, Spending(today=1e9, this_month=1e9))  # no caps: anything goes
    assert not Budget().enabled and Budget(monthly_usd=0).enabled
