"""``card``: an offline typographic card, so blogimg works with no keys and no network.

The card is drawn with libvips: a two-colour gradient and a few translucent shapes whose
palette and placement are derived from a hash of the prompt (the same prompt always gives the
same card, byte for byte), with its headline set in real typefaces shipped as Python packages
(providers/card_text.py) so no system fonts are needed. It costs nothing.

What the card says depends on the image: a cover leads with the post's title under its tags; an
inline or section image leads with its own subject (the marker's description or the section's
heading) under the post's title, set small. The text sits in a column no wider than the card's
short side, so a square crop can keep it whole, and the card reports that column as its focus.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import re
from dataclasses import dataclass

import pyvips

from blogimg.domain import ImageRequest, PromptKind, ProviderImage
from blogimg.providers.base import ProviderInfo
from blogimg.providers.card_text import drawable, set_text

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
_LABEL_CHARS = 60  #: a longer label is cut at a word with an ellipsis
_SUBJECT_WORDS = 12  #: an inline image's subject is cut to this many words


@dataclass(frozen=True, slots=True)
class Box:
    """A rectangle in pixels: left, top, width, height."""

    left: int
    top: int
    width: int
    height: int

    @property
    def right(self) -> int:
        return self.left + self.width

    @property
    def bottom(self) -> int:
        return self.top + self.height

    def union(self, other: Box) -> Box:
        left, top = min(self.left, other.left), min(self.top, other.top)
        return Box(left, top, max(self.right, other.right) - left, max(self.bottom, other.bottom) - top)

    def grown(self, by: int) -> Box:
        return Box(self.left - by, self.top - by, self.width + 2 * by, self.height + 2 * by)

    def overlaps(self, other: Box) -> bool:
        return (self.left < other.right and other.left < self.right
                and self.top < other.bottom and other.top < self.bottom)


@dataclass(frozen=True, slots=True)
class CardDrawing:
    """A drawn card and where everything on it is."""

    data: bytes
    width: int
    height: int
    headline: str  #: the large text exactly as drawn; "" when the card sets none
    label: str  #: the small text above it exactly as drawn; "" when none
    headline_box: Box | None
    label_box: Box | None
    rule_box: Box
    shape_boxes: tuple[Box, ...]

    @property
    def focus(self) -> Box:
        """What a crop must keep: the rule, the label and the headline."""
        focus = self.rule_box
        for box in (self.label_box, self.headline_box):
            if box is not None:
                focus = focus.union(box)
        return focus

    @property
    def alt_text(self) -> str:
        if self.headline:
            return f"Typographic card reading “{self.headline}” over a coloured gradient"
        return "Abstract card of coloured shapes over a gradient"


class CardProvider:
    """Renders cards in a worker thread so the event loop stays free."""

    info = INFO

    def __init__(self, settings: object | None = None) -> None:
        # Nothing to configure; the argument makes the class its own registry factory.
        del settings

    def estimate_cost(self, request: ImageRequest) -> float:
        return 0.0

    async def generate(self, request: ImageRequest) -> ProviderImage:
        card = await asyncio.to_thread(draw_card, request)
        box, width, height = card.focus, card.width, card.height
        focus = (max(0.0, box.left / width), max(0.0, box.top / height),
                 min(1.0, box.right / width), min(1.0, box.bottom / height))
        return ProviderImage(data=card.data, model="card-v1", cost_usd=0.0, alt_text=card.alt_text,
                             focus=focus)

    async def aclose(self) -> None:
        return None


def render_card(request: ImageRequest) -> bytes:
    """Draw the card for ``request`` and return PNG bytes; deterministic for the same request."""
    return draw_card(request).data


def headline_and_label(request: ImageRequest) -> tuple[str, str]:
    """What the card sets large and small for ``request``, before dropping undrawable characters."""
    title = " ".join(request.title.split())
    if request.kind is PromptKind.COVER:
        tags = "  ·  ".join(tag.upper() for tag in request.tags[:3] if tag.strip())
        return title or _subject(request.prompt), tags
    if request.kind is PromptKind.SECTION and request.subtitle.strip():
        headline = " ".join(request.subtitle.split())
    else:
        headline = _subject(request.prompt) or " ".join(request.subtitle.split())
    return headline, title if title.casefold() != headline.casefold() else ""


def draw_card(request: ImageRequest) -> CardDrawing:
    """Draw the card for ``request``; deterministic for the same request."""
    width, height = request.size.width, request.size.height
    # Variation 0 keeps the seed cards have always had.
    variation = f"\x1f{request.variation}" if request.variation else ""
    seed = hashlib.sha256(f"{request.prompt}\x1f{request.title}{variation}".encode()).digest()
    chooser = random.Random(seed)
    start, end, accent, ink = _PALETTES[seed[0] % len(_PALETTES)]
    angle = chooser.uniform(0, math.pi)

    side = min(width, height)
    margin = max(4, round(side * 0.08))
    gap = max(3, round(side * 0.03))
    column = side - 2 * margin  # fits any square crop that holds the column's left edge
    headline_text, label_text = (drawable(text) for text in headline_and_label(request))
    label_text = _shorten(label_text, _LABEL_CHARS)

    bottom = height - margin
    headline_box = label_box = None
    layers: list[tuple[pyvips.Image, int, int]] = []
    if headline_text:
        headline = set_text(headline_text, weight="Bold", colour=ink, box_width=column,
                            box_height=round(side * 0.42))
        headline_box = Box(margin, bottom - headline.height, headline.width, headline.height)
        layers.append((headline, headline_box.left, headline_box.top))
        bottom = headline_box.top - gap
    if label_text:
        label = set_text(label_text, weight="Semi-Bold", colour=accent, box_width=column,
                         box_height=max(8, round(side * 0.05)))
        label_box = Box(margin, bottom - label.height, label.width, label.height)
        layers.append((label, label_box.left, label_box.top))
        bottom = label_box.top - gap
    # A short accent rule above the text, the kind of detail that makes it look designed.
    rule_height = max(2, side // 150)
    rule_box = Box(margin, bottom - rule_height, max(8, round(side * 0.18)), rule_height)
    text_block = rule_box
    for box in (label_box, headline_box):
        if box is not None:
            text_block = text_block.union(box)

    card = _gradient(width, height, _rgb(start), _rgb(end), angle=angle)
    shapes, shape_boxes = _shapes(width, height, _rgb(accent), _rgb(end), chooser,
                                  keep_clear=text_block.grown(gap))
    card = card.composite2(shapes, "over").flatten().cast("uchar")
    for layer, x, y in layers:
        card = card.composite2(layer, "over", x=x, y=y).flatten().cast("uchar")
    card = card.draw_rect(list(_rgb(accent)), rule_box.left, rule_box.top, rule_box.width,
                          rule_box.height, fill=True)
    data = card.cast("uchar").pngsave_buffer(compression=1, strip=True)
    return CardDrawing(data=data, width=width, height=height, headline=headline_text,
                       label=label_text, headline_box=headline_box, label_box=label_box,
                       rule_box=rule_box, shape_boxes=shape_boxes)


def _subject(prompt: str) -> str:
    """The lead of an image prompt: up to its first sentence or dash, capitalised, at most a
    dozen words (cut with an ellipsis)."""
    text = " ".join(prompt.split())
    first = re.split(r";\s|\s[—–]\s|\s-\s|\.\s", text, maxsplit=1)[0]
    words = first.split()
    if len(words) > _SUBJECT_WORDS:
        first = " ".join(words[:_SUBJECT_WORDS]).rstrip(",;:") + "…"
    return first[:1].upper() + first[1:]


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0].rstrip(" ·,;:—-")
    return cut + "…"


def _gradient(width: int, height: int, start: tuple[int, ...], end: tuple[int, ...], angle: float):
    coordinates = pyvips.Image.xyz(width, height)
    x, y = coordinates[0], coordinates[1]
    direction = (x * math.cos(angle) + y * math.sin(angle))
    low, high = direction.min(), direction.max()
    t = (direction - low) / max(high - low, 1)
    bands = [t * (e - s) + s for s, e in zip(start, end, strict=True)]
    return bands[0].bandjoin(bands[1:]).copy(interpretation="srgb").bandjoin(255).cast("uchar")


def _shapes(width: int, height: int, accent, end, chooser: random.Random, *, keep_clear: Box):
    """A few translucent circles and bars, each wholly on the card and clear of the text."""
    layer = pyvips.Image.black(width, height, bands=4).copy(interpretation="srgb").cast("uchar")
    scale = min(width, height)
    boxes: list[Box] = []
    wanted = chooser.randint(3, 6)
    for _ in range(wanted * 8):  # a bounded number of tries: a crowded card gets fewer shapes
        if len(boxes) == wanted:
            break
        colour = accent if chooser.random() < 0.5 else tuple(min(255, c + 60) for c in end)
        alpha = chooser.randint(40, 110)
        radius = chooser.randint(max(2, scale // 12), max(3, scale // 4))
        circle = chooser.random() < 0.7
        box = (Box(0, 0, 2 * radius + 1, 2 * radius + 1) if circle
               else Box(0, 0, 2 * radius, max(6, radius // 4)))
        if box.width >= width or box.height >= height:
            continue
        box = Box(chooser.randint(0, width - box.width - 1), chooser.randint(0, height - box.height - 1),
                  box.width, box.height)
        if box.overlaps(keep_clear):
            continue
        if circle:
            layer = layer.draw_circle([*colour, alpha], box.left + radius, box.top + radius, radius,
                                      fill=True)
        else:
            layer = layer.draw_rect([*colour, alpha], box.left, box.top, box.width, box.height,
                                    fill=True)
        boxes.append(box)
    return layer, tuple(boxes)


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    value = hex_colour.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)
