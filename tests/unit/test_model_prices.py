"""``model_prices``: every model of a provider with its price text, or "unknown" — never $0 for a gap."""

from __future__ import annotations

from blogimg.providers import google, openai
from blogimg.providers.pricing import UNKNOWN, PriceTable, default_prices, model_prices, price_text

TABLE = PriceTable.from_toml("""
as_of = "2026-11-30"

[[image]]
provider = "p"
model = "sized"
prices = [
  { size = "1024x1024", quality = "low", usd = 0.005 },
  { size = "1536x1024", quality = "low", usd = 0.006 },
  { size = "1024x1024", quality = "high", usd = 0.2 },
]

[[image]]
provider = "p"
model = "flat"
prices = [{ size = "*", quality = "*", usd = 0.039 }]

[[tokens]]
provider = "p"
model = "tokens-only"
input_text = 5.0
output_image = 30.0

[[tokens]]
provider = "p"
model = "text-tokens-only"
input_text = 0.4
output_text = 1.6
""")


def test_each_model_in_order_with_its_range_flat_price_token_price_or_unknown() -> None:
    models = ["sized", "flat", "tokens-only", "text-tokens-only", "nobody-priced-this"]
    assert model_prices("p", models, "low", TABLE) == [
        ("sized", "$0.005–$0.006"),
        ("flat", "$0.039"),
        ("tokens-only", "$30 per 1M image tokens"),
        ("text-tokens-only", UNKNOWN),
        ("nobody-priced-this", UNKNOWN),
    ]


def test_quality_picks_its_prices_and_auto_spans_them_all() -> None:
    assert price_text(TABLE, "p", "sized", "high") == "$0.200"
    assert price_text(TABLE, "p", "sized", "medium") == UNKNOWN
    assert price_text(TABLE, "p", "sized", "auto") == "$0.005–$0.200"
    assert price_text(TABLE, "other", "sized", "low") == UNKNOWN  # prices belong to one provider


def test_the_shipped_table_prices_the_current_flagships() -> None:
    openai_prices = dict(model_prices(openai.NAME, openai.INFO.models, "high"))
    assert list(openai_prices) == list(openai.INFO.models)
    assert openai_prices["gpt-image-2"] == "$0.165–$0.211"
    assert openai_prices["gpt-image-2.6-sunburst"] == "$30 per 1M image tokens"
    assert openai_prices["chatgpt-image-latest"] == UNKNOWN
    google_prices = dict(model_prices(google.NAME, google.INFO.models, "high", default_prices()))
    assert google_prices["gemini-3-pro-image"] == "$0.134"
    assert google_prices["gemini-3.1-flash-lite-image"] == UNKNOWN
