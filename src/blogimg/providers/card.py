"""``card``: an offline typographic card, so blogimg works with no keys and no network.

The card is drawn with libvips: a two-colour gradient and a few translucent shapes whose
palette and placement are derived from a hash of the prompt (the same prompt always gives the
same card, byte for byte), with the post's title set in Source Sans Pro, a real typeface
shipped as a Python package so no system fonts are needed. It costs nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import math
import random

import font_source_sans_pro
import pyvips

from blogimg.domain import ImageRequest, PromptKind, ProviderImage
from blogimg.providers.base import ProviderInfo

INFO = ProviderInfo(
    name="card",
    description="Offline typographic card (gradient, shapes and the post title); no AI, free.",
    models=("card-v1",),
    output_formats=("png",),
    offline=True,
)

# Hand-picked pairs that read well under white or near-black text: (start, end, accent, text).
_PALETTES: tuple[tuple[str, str, str, str], ...] = (
    ("#0f2027", "#2c5364", "#f7b733", "#ffffff"),
    ("#41295a", "#2f0743", "#ff6a88", "#ffffff"),
    ("#134e5e", "#71b280", "#f9d423", "#ffffff"),
    ("#fceabb", "#f8b500", "#c0392b", "#1b1b1b"),
    ("#e0eafc", "#cfdef3", "#3a6073", "#14213d"),
    ("#232526", "#414345", "#00c9ff", "#ffffff"),
    ("#ff5f6d", "#ffc371", "#2b2d42", "#1b1b1b"),
    ("#1d4350", "#a43931", "#ffd194", "#ffffff"),
    ("#f2fcfe", "#1c92d2", "#0b3954", "#0b1d2a"),
    ("#3a1c71", "#d76d77", "#ffaf7b", "#ffffff"),
)
_TITLE_FONT = font_source_sans_pro.font_files_ttf["SourceSansProBold"]
_LABEL_FONT = font_source_sans_pro.font_files_ttf["SourceSansProSemibold"]


class CardProvider:
    """Renders cards in a worker thread so the event loop stays free."""

    info = INFO

    def __init__(self, settings: object | None = None) -> None:
        # Nothing to configure; the argument makes the class its own registry factory.
        del settings

    def estimate_cost(self, request: ImageRequest) -> float:
        return 0.0

    async def generate(self, request: ImageRequest) -> ProviderImage:
        data = await asyncio.to_thread(render_card, request)
        headline = request.title or request.prompt
        alt = f"Typographic card reading “{headline}” over a coloured gradient"
        return ProviderImage(data=data, model="card-v1", cost_usd=0.0, alt_text=alt)

    async def aclose(self) -> None:
        return None


def render_card(request: ImageRequest) -> bytes:
    """Draw the card for ``request`` and return PNG bytes; deterministic for the same request."""
    width, height = request.size.width, request.size.height
    # Variation 0 keeps the seed cards have always had, so existing cards are redrawn identically.
    variation = f"\x1f{request.variation}" if request.variation else ""
    seed = hashlib.sha256(f"{request.prompt}\x1f{request.title}{variation}".encode()).digest()
    chooser = random.Random(seed)
    start, end, accent, ink = _PALETTES[seed[0] % len(_PALETTES)]

    card = _gradient(width, height, _rgb(start), _rgb(end), angle=chooser.uniform(0, math.pi))
    card = card.composite2(_shapes(width, height, _rgb(accent), _rgb(end), chooser), "over")
    card = card.flatten().cast("uchar")

    margin = round(min(width, height) * 0.08)
    headline = request.title or request.prompt
    title = _text(headline, _TITLE_FONT, "Source Sans Pro Bold", ink,
                  box_width=width - 2 * margin, box_height=round(height * 0.42))
    label_text = _label(request)
    label = _text(label_text, _LABEL_FONT, "Source Sans Pro Semibold", accent,
                  box_width=width - 2 * margin, box_height=max(18, round(height * 0.045)))
    bottom = height - margin
    title_top = bottom - title.height
    card = card.composite2(title, "over", x=margin, y=title_top)
    card = card.composite2(label, "over", x=margin, y=max(margin // 2, title_top - label.height - margin // 3))
    # A short accent rule above the label, the kind of detail that makes it look designed.
    rule_y = max(margin // 4, title_top - label.height - margin // 3 - margin // 2)
    card = card.flatten().cast("uchar")
    card = card.draw_rect(list(_rgb(accent)), margin, rule_y, round(width * 0.12), max(4, height // 150), fill=True)
    return card.cast("uchar").pngsave_buffer(compression=1, strip=True)


def _label(request: ImageRequest) -> str:
    if request.kind is PromptKind.COVER:
        parts = [tag.upper() for tag in request.tags[:3]]
        return "  ·  ".join(parts) if parts else "BLOG"
    words = (request.subtitle or request.prompt).split()
    short = " ".join(words[:9]) + ("…" if len(words) > 9 else "")
    return short


def _gradient(width: int, height: int, start: tuple[int, ...], end: tuple[int, ...], angle: float):
    coordinates = pyvips.Image.xyz(width, height)
    x, y = coordinates[0], coordinates[1]
    direction = (x * math.cos(angle) + y * math.sin(angle))
    low, high = direction.min(), direction.max()
    t = (direction - low) / max(high - low, 1)
    bands = [t * (e - s) + s for s, e in zip(start, end, strict=True)]
    return bands[0].bandjoin(bands[1:]).copy(interpretation="srgb").bandjoin(255).cast("uchar")


def _shapes(width: int, height: int, accent, end, chooser: random.Random):
    layer = pyvips.Image.black(width, height, bands=4).copy(interpretation="srgb").cast("uchar")
    scale = min(width, height)
    for _ in range(chooser.randint(3, 6)):
        colour = accent if chooser.random() < 0.5 else tuple(min(255, c + 60) for c in end)
        alpha = chooser.randint(40, 110)
        cx, cy = chooser.randint(0, width), chooser.randint(0, round(height * 0.6))
        radius = chooser.randint(scale // 10, scale // 3)
        if chooser.random() < 0.7:
            layer = layer.draw_circle([*colour, alpha], cx, cy, radius, fill=True)
        else:
            layer = layer.draw_rect([*colour, alpha], cx - radius, cy - radius // 4,
                                    radius * 2, max(6, radius // 4), fill=True)
    return layer


def _text(text: str, font_file: str, family: str, colour: str, *, box_width: int, box_height: int):
    markup = f'<span foreground="{colour}">{html.escape(text)}</span>'
    # With both width and height libvips searches the largest size that fits the box.
    rendered = pyvips.Image.text(markup, font=family, fontfile=font_file, width=box_width,
                                 height=box_height, rgba=True, wrap="word-char")
    return rendered.copy(interpretation="srgb")


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    value = hex_colour.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)
