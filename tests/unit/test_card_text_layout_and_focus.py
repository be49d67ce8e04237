"""The card draws every script it is given (or drops what it cannot), says only what it shows,
leads each image with its own subject, keeps its text clear of everything else and in every
thumbnail (issues #18, #19, #20).

The checks watch libvips' ``text`` and ``composite2`` calls the card makes, so they judge what is
drawn rather than how the card module is organised.
"""

from __future__ import annotations

import html
import re
import unicodedata
from pathlib import Path

import pytest
import pyvips
import yaml

from blogimg.domain import ImageRequest, PromptKind, Size
from blogimg.imaging.process import ImagingOptions, process_image
from blogimg.providers.card import CardProvider

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "posts"
CJK_AND_EMOJI = [
    "Kyoto in Autumn: 紅葉 Beyond the Crowds",  # Japanese kanji in a Latin title
    "京都の紅葉：人混みを避けて歩く",  # Japanese with kana
    "在成都吃一碗真正的担担面",  # Chinese
    "서울의 골목 식당에서 배운 것들",  # Korean
    "My First Marathon 🏃 and What Broke 🍁",  # emoji
]


class Spy:
    """Records the card's text and composite calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.texts: list[dict] = []
        self.layers: list[tuple[int, int, int, int]] = []
        real_text, real_composite = pyvips.Image.text, pyvips.Image.composite2

        def text(markup, **kwargs):
            image = real_text(markup, **kwargs)
            plain = html.unescape(re.sub(r"<[^>]+>", "", markup))
            self.texts.append({"text": plain, "size": (image.width, image.height), **kwargs})
            return image

        def composite2(base, overlay, mode, **kwargs):
            if any(call["size"] == (overlay.width, overlay.height) for call in self.texts):
                self.layers.append((kwargs.get("x", 0), kwargs.get("y", 0), overlay.width, overlay.height))
            return real_composite(base, overlay, mode, **kwargs)

        monkeypatch.setattr(pyvips.Image, "text", staticmethod(text))
        monkeypatch.setattr(pyvips.Image, "composite2", composite2)
        self._real_text = real_text

    def drawn(self) -> list[dict]:
        """Text calls that put text on a card (not a font being registered)."""
        return [call for call in self.texts if call.get("width")]

    def headline(self) -> dict:
        return max(self.drawn(), key=lambda call: call["height"])


def _render(text: str, font: str, fontfile: str | None = None, *, fallback: bool = True) -> pyvips.Image:
    markup = html.escape(text) if fallback else f'<span fallback="false">{html.escape(text)}</span>'
    extra = {"fontfile": fontfile} if fontfile else {}
    return pyvips.Image.text(markup, font=font, rgba=True, **extra)


def _same(a: pyvips.Image, b: pyvips.Image) -> bool:
    return (a.width, a.height) == (b.width, b.height) and a.write_to_memory() == b.write_to_memory()


def _boxes(call: dict) -> list[str]:
    """The characters of one text call that Pango draws as a missing-glyph (hex) box.

    Pango's box for a code point looks the same whatever font it stands in for, so a character
    is a box when the card's rendering of it is pixel-identical to the renderings of two fonts
    with nothing in common that both lack it (Source Sans Pro, Noto Emoji; no fallback).
    """
    import font_source_sans_pro
    import manimgx_fonts

    latin = font_source_sans_pro.font_files_ttf["SourceSansProBold"]
    emoji = str(Path(manimgx_fonts.__file__).parent / "NotoEmoji[wght].ttf")
    boxes = []
    for char in dict.fromkeys(call["text"]):
        if unicodedata.category(char) in {"Zs", "Cf", "Mn", "Cc"}:
            continue
        mine = _render(char, f"{call['font']} 40", call.get("fontfile"))
        a = _render(char, "Source Sans Pro Bold 40", latin, fallback=False)
        b = _render(char, "Noto Emoji Bold 40", emoji, fallback=False)
        if _same(mine, a) and _same(a, b):
            boxes.append(char)
    return boxes


def _example_titles() -> list[str]:
    titles = []
    for path in sorted(EXAMPLES.glob("*.md")):
        front = yaml.safe_load(path.read_text(encoding="utf-8").split("---")[1])
        titles.append(str(front["title"]))
    return titles


@pytest.mark.parametrize("title", CJK_AND_EMOJI + _example_titles())
async def test_no_title_is_drawn_with_missing_glyph_boxes(monkeypatch: pytest.MonkeyPatch, title: str) -> None:
    spy = Spy(monkeypatch)
    image = await CardProvider().generate(ImageRequest(prompt="a cover", size=Size(1536, 1024),
                                                       title=title, tags=("travel", "日本")))
    assert title in image.alt_text  # every glyph of these titles has a face: nothing dropped
    for call in spy.drawn():
        assert _boxes(call) == [], f"{call['text']!r} draws boxes"


@pytest.mark.parametrize("title", CJK_AND_EMOJI[1:])
def test_the_example_posts_cover_japanese_chinese_korean_and_emoji(title: str) -> None:
    assert title in _example_titles()


async def test_a_glyph_no_face_has_is_dropped_and_the_alt_text_claims_only_what_is_drawn(
        monkeypatch: pytest.MonkeyPatch) -> None:
    spy = Spy(monkeypatch)
    # U+13000 (an Egyptian hieroglyph): none of the card's faces, nor common system fonts, has it.
    image = await CardProvider().generate(ImageRequest(prompt="a cover", size=Size(800, 500),
                                                       title="Reading \U00013000 Hieroglyphs"))
    quoted = re.findall(r"“([^”]*)”", image.alt_text or "")
    assert quoted == [spy.headline()["text"]] == ["Reading Hieroglyphs"]
    for call in spy.drawn():
        assert "\U00013000" not in call["text"] and _boxes(call) == []

    spy.texts.clear()
    nothing = await CardProvider().generate(ImageRequest(prompt="a cover", size=Size(800, 500),
                                                         title="\U00013000\U00013001"))
    assert "reading" not in (nothing.alt_text or "").lower() and "“" not in (nothing.alt_text or "")
    assert all(_boxes(call) == [] for call in spy.drawn())


async def test_each_image_of_a_post_leads_with_its_own_subject(monkeypatch: pytest.MonkeyPatch) -> None:
    title = "A Balcony Vegetable Garden on Two Square Metres"
    requests = [
        ImageRequest(prompt="a balcony garden", size=Size(1536, 1024), title=title, tags=("gardening",)),
        ImageRequest(prompt="a small city balcony crowded with tomato plants, climbing beans, evening sun",
                     size=Size(1536, 1024), kind=PromptKind.INLINE, title=title, subtitle="Containers"),
        ImageRequest(prompt="drip irrigation on a balcony", size=Size(1536, 1024),
                     kind=PromptKind.SECTION, title=title, subtitle="Watering"),
    ]
    headlines = []
    for request in requests:
        spy = Spy(monkeypatch)
        image = await CardProvider().generate(request)
        lead = spy.headline()
        headlines.append(lead["text"])
        for other in spy.drawn():  # the post's title, if set at all, is set small
            if other is not lead:
                assert other["height"] < lead["height"] / 3
        assert f"“{lead['text']}”" in (image.alt_text or "")
        monkeypatch.undo()
    assert headlines[0] == title
    assert headlines[1].startswith("A small city balcony crowded with tomato plants")
    assert headlines[2] == "Watering"
    assert len(set(headlines)) == 3


async def test_a_post_without_tags_gets_no_made_up_label(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = Spy(monkeypatch)
    await CardProvider().generate(ImageRequest(prompt="a cover", size=Size(800, 500), title="Untagged"))
    assert [call["text"] for call in spy.drawn()] == ["Untagged"]


LONG = "Networking from First Principles — The TCP Handshake, SYN Cookies and Everything Between"
SIZES = [(64, 64), (96, 64), (128, 96), (1536, 256), (256, 1536), (800, 500), (1536, 1024), (1024, 1536)]


@pytest.mark.parametrize("size", SIZES)
async def test_the_tag_line_never_touches_the_title(monkeypatch: pytest.MonkeyPatch, size: tuple[int, int]) -> None:
    for title in ("Tea", LONG, "京都の紅葉：人混みを避けて歩く朝"):
        spy = Spy(monkeypatch)
        await CardProvider().generate(ImageRequest(prompt="p", size=Size(*size), title=title,
                                                   tags=("networking", "tcp", "linux")))
        lead = spy.headline()["size"]
        [headline] = [layer for layer in spy.layers if layer[2:] == lead]
        for layer in spy.layers:
            if layer is headline:
                continue
            x, y, w, h = layer
            assert y + h + 2 <= headline[1], f"label {layer} touches title {headline} at {size}"
            assert 0 <= x and x + w <= size[0] and 0 <= y
        monkeypatch.undo()


@pytest.mark.parametrize("size", SIZES)
def test_shapes_are_whole_and_clear_of_the_text(size: tuple[int, int]) -> None:
    from blogimg.providers.card import draw_card

    for index in range(12):
        card = draw_card(ImageRequest(prompt=f"prompt {index}", size=Size(*size), title=LONG[: 10 + 7 * index],
                                      tags=("a", "b")))
        focus = card.focus
        assert card.label_box is None or card.rule_box.bottom < card.label_box.top
        assert card.headline_box is not None and card.label_box is not None
        assert card.label_box.bottom < card.headline_box.top
        for box in card.shape_boxes:
            assert 0 <= box.left and box.right <= size[0] and 0 <= box.top and box.bottom <= size[1]
            assert not box.overlaps(focus)


def _posts_requests() -> list[ImageRequest]:
    requests = []
    for path in sorted(EXAMPLES.glob("*.md")):
        front = yaml.safe_load(path.read_text(encoding="utf-8").split("---")[1])
        tags = front.get("tags") or []
        tags = tags.split(",") if isinstance(tags, str) else tags
        for size in (Size(1536, 1024), Size(1024, 1536), Size(1024, 1024)):
            requests.append(ImageRequest(prompt=str(front.get("summary", "")), size=size,
                                         title=str(front["title"]), tags=tuple(tags)))
    return requests


async def test_every_card_thumbnail_contains_the_whole_title() -> None:
    from blogimg.imaging.process import thumbnail_window

    options = ImagingOptions(variant_widths=(480,), variant_formats=("webp",), threads=1)
    for request in _posts_requests():
        image = await CardProvider().generate(request)
        assert image.focus is not None
        processed = process_image(image.data, options, focus=image.focus)
        width, height = request.size.width, request.size.height
        x, y, w, h = thumbnail_window(width, height, image.focus)
        left, top, right, bottom = image.focus
        assert x <= left * width and right * width <= x + w, (request.title, request.size)
        assert y <= top * height and bottom * height <= y + h, (request.title, request.size)
        # The thumbnail really is that window.
        card = pyvips.Image.new_from_buffer(image.data, "")
        expected = card.extract_area(x, y, w, h).thumbnail_image(300, height=300, size="both")
        thumb = pyvips.Image.new_from_buffer(processed.thumbnail.data, "")
        assert (thumb.width, thumb.height) == (300, 300)
        assert (thumb - expected).abs().avg() < 6


def test_a_focal_point_moves_the_thumbnail_crop() -> None:
    def block(colour: list[int]) -> pyvips.Image:
        return (pyvips.Image.black(512, 1024) + colour).cast("uchar").copy(interpretation="srgb")

    red, grey, blue = [220, 30, 30], [128, 128, 128], [30, 30, 220]
    data = block(red).join(block(grey), "horizontal").join(block(blue), "horizontal").pngsave_buffer()
    options = ImagingOptions(variant_widths=(480,), variant_formats=("webp",), threads=1)
    for point, edges in (((0.05, 0.5), (red, grey)), ((0.95, 0.5), (grey, blue)), ((0.5, 0.5), (red, blue))):
        thumb = pyvips.Image.new_from_buffer(process_image(data, options, focus=point).thumbnail.data, "")
        assert (thumb.width, thumb.height) == (300, 300)
        for x, colour in zip((2, 297), edges, strict=True):
            assert [round(thumb.crop(x, 100, 1, 100)[band].avg()) for band in range(3)] == pytest.approx(colour, abs=12)
