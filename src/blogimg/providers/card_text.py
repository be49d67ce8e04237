"""Setting the card's text: which fonts, which characters they can draw, and the drawing.

The card never relies on the machine's fonts. Every face comes from a Python package:
Source Sans Pro for Latin, Greek and Cyrillic, Noto Sans CJK for Chinese, Japanese and Korean,
Noto Emoji for emoji, and Noto Sans Symbols and the Noto Sans script faces for the rest. Pango
is given the faces' files (libvips' ``fontfile``) and their families as one ordered list, so a
character is drawn from the first face that has it.

A character that none of the faces has is dropped before Pango sees it: Pango would draw it as
a box with its hex code in it. :func:`drawable` is the one place that decides, from the faces'
own character maps, and the card's alt text quotes only what it returns.
"""

from __future__ import annotations

import html
import importlib
import struct
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import font_source_sans_pro
import pyvips

# Characters that are never drawn but join or select what is: zero-width joiner and non-joiner,
# direction marks, variation selectors and emoji tag characters. Pango draws them as nothing.
_INVISIBLE = frozenset({0x200C, 0x200D, 0x200E, 0x200F, *range(0xFE00, 0xFE10),
                        *range(0xE0020, 0xE0080), *range(0xE0100, 0xE01F0)})


@dataclass(frozen=True, slots=True)
class Face:
    """One font file and the family name Pango knows it by."""

    family: str
    path: str


@cache
def faces() -> tuple[Face, ...]:
    """The card's faces in order of preference; the optional packages add theirs when installed."""
    found = [Face("Source Sans Pro", font_source_sans_pro.font_files_ttf["SourceSansProBold"]),
             Face("Source Sans Pro", font_source_sans_pro.font_files_ttf["SourceSansProSemibold"])]
    try:
        cjk = importlib.import_module("noto_cjk_sans_jp_bold")
        found.append(Face("Noto Sans CJK JP", str(cjk.FONT_PATH)))
    except ImportError:  # pragma: no cover - a default dependency; without it CJK is dropped
        pass
    try:
        noto = importlib.import_module("manimgx_fonts")
        folder = Path(str(noto.__file__)).parent
        # Emoji and symbols first, then the script faces; italic is never used.
        names = ["NotoEmoji[wght].ttf", "NotoSansSymbols[wght].ttf"]
        names += sorted(p.name for p in folder.glob("NotoSans*.ttf")
                        if p.name not in names and "Italic" not in p.name)
        found += [Face(_family_name(folder / name), str(folder / name))
                  for name in names if (folder / name).is_file()]
    except ImportError:  # pragma: no cover - a default dependency; without it emoji are dropped
        pass
    return tuple(found)


def font_description(weight: str) -> str:
    """A Pango font description naming every face's family, in order, then ``weight``."""
    families = list(dict.fromkeys(face.family for face in faces()))
    return f"{','.join(families)} {weight}"


@cache
def coverage() -> frozenset[int]:
    """Every code point some face of the card maps to a glyph."""
    covered: set[int] = set()
    for face in faces():
        covered |= _cmap(Path(face.path))
    return frozenset(covered)


def drawable(text: str) -> str:
    """``text`` less every character no face can draw, with whitespace collapsed."""
    covered = coverage()
    kept: list[str] = []
    for char in text:
        point = ord(char)
        if char.isspace():
            kept.append(" ")
        elif point in covered or (point in _INVISIBLE and kept and kept[-1] != " "):
            kept.append(char)
    words = "".join(kept).split()
    # A word left with only joiners and selectors draws nothing: drop it with its space.
    return " ".join(word for word in words if any(ord(c) not in _INVISIBLE for c in word))


_register_lock = threading.Lock()
_registered = False


def _register() -> None:
    """Hand every face's file to fontconfig once (libvips keeps them for the process)."""
    global _registered
    with _register_lock:
        if _registered:
            return
        for face in faces():
            pyvips.Image.text(".", font=face.family, fontfile=face.path)
        _registered = True


def set_text(text: str, *, weight: str, colour: str, box_width: int, box_height: int) -> pyvips.Image:
    """``text`` (already :func:`drawable`) as RGBA, at the largest size that fits the box."""
    _register()
    markup = f'<span foreground="{colour}">{html.escape(text)}</span>'
    # With both width and height libvips searches the largest size that fits the box.
    rendered = pyvips.Image.text(markup, font=font_description(weight), width=box_width,
                                 height=box_height, rgba=True, wrap="word-char")
    return rendered.copy(interpretation="srgb")


def _cmap(path: Path) -> set[int]:
    """The code points of a TrueType/OpenType file's Unicode cmap subtables (formats 4 and 12)."""
    data = path.read_bytes()
    tables = _tables(data)
    if b"cmap" not in tables:
        return set()
    base = tables[b"cmap"]
    count = struct.unpack_from(">H", data, base + 2)[0]
    points: set[int] = set()
    for index in range(count):
        platform, encoding, offset = struct.unpack_from(">HHI", data, base + 4 + 8 * index)
        if not (platform == 0 or (platform == 3 and encoding in (1, 10))):
            continue
        start = base + offset
        fmt = struct.unpack_from(">H", data, start)[0]
        if fmt == 4:
            points |= _format4(data, start)
        elif fmt == 12:
            groups = struct.unpack_from(">I", data, start + 12)[0]
            for group in range(groups):
                first, last, glyph = struct.unpack_from(">III", data, start + 16 + 12 * group)
                points.update(range(first, last + 1) if glyph else range(first + 1, last + 1))
    return points


def _format4(data: bytes, start: int) -> set[int]:
    segments = struct.unpack_from(">H", data, start + 6)[0] // 2
    ends_at = start + 14
    starts_at = ends_at + 2 * segments + 2
    deltas_at = starts_at + 2 * segments
    ranges_at = deltas_at + 2 * segments
    points: set[int] = set()
    for seg in range(segments):
        end = struct.unpack_from(">H", data, ends_at + 2 * seg)[0]
        first = struct.unpack_from(">H", data, starts_at + 2 * seg)[0]
        delta = struct.unpack_from(">h", data, deltas_at + 2 * seg)[0]
        range_offset = struct.unpack_from(">H", data, ranges_at + 2 * seg)[0]
        for point in range(first, min(end, 0xFFFE) + 1):
            if range_offset == 0:
                glyph = (point + delta) & 0xFFFF
            else:
                at = ranges_at + 2 * seg + range_offset + 2 * (point - first)
                glyph = struct.unpack_from(">H", data, at)[0]
                glyph = (glyph + delta) & 0xFFFF if glyph else 0
            if glyph:
                points.add(point)
    return points


def _tables(data: bytes) -> dict[bytes, int]:
    count = struct.unpack_from(">H", data, 4)[0]
    return {data[12 + 16 * i: 16 + 16 * i]: struct.unpack_from(">I", data, 20 + 16 * i)[0]
            for i in range(count)}


def _family_name(path: Path) -> str:
    """The font's family (typographic family, name ID 16, else ID 1; Windows Unicode)."""
    data = path.read_bytes()
    base = _tables(data).get(b"name")
    names: dict[int, str] = {}
    if base is not None:
        count, strings = struct.unpack_from(">HH", data, base + 2)
        for index in range(count):
            platform, encoding, _language, name_id, length, offset = struct.unpack_from(
                ">HHHHHH", data, base + 6 + 12 * index)
            if name_id in (1, 16) and platform == 3 and encoding in (1, 10):
                at = base + strings + offset
                names.setdefault(name_id, data[at: at + length].decode("utf-16-be"))
    return names.get(16) or names.get(1) or path.stem.split("[")[0]
