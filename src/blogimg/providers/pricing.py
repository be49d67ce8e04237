"""What a provider call costs: a dated price table (``prices.toml``) and usage → dollars.

Prices are data, not code: they change more often than blogimg does, so they live in a TOML
file with the date they were read. Anything the table does not know is *unknown* (``None``),
which the ledger stores as NULL and reports as "unknown" — never as free.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from blogimg.errors import ConfigurationError

PRICES_FILE = Path(__file__).with_name("prices.toml")
_ANY = "*"


@dataclass(frozen=True, slots=True)
class TokenPrices:
    """US dollars per million tokens of each kind; None where the table has no price."""

    input_text: float | None = None
    input_image: float | None = None
    output_image: float | None = None
    output_text: float | None = None


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Tokens one call used, as the API reported them."""

    input_text: int = 0
    input_image: int = 0
    output_image: int = 0
    output_text: int = 0


@dataclass(frozen=True, slots=True)
class ImagePrice:
    size: str
    quality: str
    usd: float


class PriceTable:
    """Per-image and per-token prices by provider and model, as of one date."""

    def __init__(self, as_of: str, images: dict[tuple[str, str], list[ImagePrice]],
                 tokens: dict[tuple[str, str], TokenPrices]) -> None:
        self.as_of = as_of
        self._images = images
        self._tokens = tokens

    @classmethod
    def from_toml(cls, text: str) -> PriceTable:
        try:
            data = tomllib.loads(text)
            images = {
                (entry["provider"], entry["model"]): [
                    ImagePrice(str(price["size"]), str(price["quality"]), float(price["usd"]))
                    for price in entry["prices"]
                ]
                for entry in data.get("image", [])
            }
            tokens = {
                (entry["provider"], entry["model"]): TokenPrices(
                    **{key: float(value) for key, value in entry.items() if key not in {"provider", "model"}}
                )
                for entry in data.get("tokens", [])
            }
            return cls(str(data["as_of"]), images, tokens)
        except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as error:
            raise ConfigurationError(f"price table is malformed: {error}") from None

    def models(self, provider: str) -> list[str]:
        return sorted({model for (name, model) in self._images if name == provider})

    def image_prices(self, provider: str, model: str) -> list[ImagePrice]:
        return list(self._images.get((provider, model), []))

    def token_prices(self, provider: str, model: str) -> TokenPrices | None:
        return self._tokens.get((provider, model))

    def image_price(self, provider: str, model: str, size: str, quality: str) -> float | None:
        """The list price of one image, or None when the table does not know it."""
        best: float | None = None
        for price in self._images.get((provider, model), []):
            if price.size in (size, _ANY) and price.quality in (quality, _ANY):
                if price.size == size and price.quality == quality:
                    return price.usd
                best = price.usd if best is None else best
        return best

    def token_cost(self, provider: str, model: str, usage: TokenUsage) -> float | None:
        """Dollars for the tokens used, or None when any used kind has no price."""
        prices = self._tokens.get((provider, model))
        if prices is None:
            return None
        total = 0.0
        for kind in ("input_text", "input_image", "output_image", "output_text"):
            count = getattr(usage, kind)
            if not count:
                continue
            per_million = getattr(prices, kind)
            if per_million is None:
                return None
            total += count * per_million / 1_000_000
        return round(total, 6)


UNKNOWN = "unknown"


def price_text(prices: PriceTable, provider: str, model: str, quality: str) -> str:
    """What one image of ``model`` costs at ``quality``, as text: a per-image range, else the
    per-token image price, else "unknown". Quality "auto" lets the model choose, so it spans all."""
    known = sorted(p.usd for p in prices.image_prices(provider, model)
                   if quality == "auto" or p.quality in (quality, _ANY))
    if known:
        low, high = known[0], known[-1]
        return f"${low:.3f}" if low == high else f"${low:.3f}–${high:.3f}"
    tokens = prices.token_prices(provider, model)
    if tokens is not None and tokens.output_image is not None:
        return f"${tokens.output_image:g} per 1M image tokens"
    return UNKNOWN


def model_prices(provider: str, models: Iterable[str], quality: str,
                 prices: PriceTable | None = None) -> list[tuple[str, str]]:
    """Each model with its price text (see :func:`price_text`), in the order given."""
    table = prices or default_prices()
    return [(model, price_text(table, provider, model, quality)) for model in models]


@cache
def default_prices() -> PriceTable:
    """The table shipped with blogimg (read once)."""
    return PriceTable.from_toml(PRICES_FILE.read_text(encoding="utf-8"))
