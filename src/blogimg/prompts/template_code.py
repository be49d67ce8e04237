"""Liquid and Hugo code blocks in a post: found in one linear scan, and hidden from the markdown parser.

``{% highlight %}``, ``{% raw %}``, ``{% comment %}`` (Jekyll) and ``{{< highlight >}}``,
``{{< code >}}`` (Hugo, also ``{{% %}}``) hold code, like fenced blocks: an image marker inside
one is an example, not a request for an image.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator

from markdown_it.token import Token

# Braces are never part of a tag's arguments, so a failed match stops at the next "{": one scan,
# linear in the post's length, however many unclosed tags it holds.
_CODE_TAG = re.compile(
    r"\{%-?\s*(?P<liquid_end>end)?(?P<liquid>highlight|raw|comment)\b[^{}]*?-?%\}"
    r"|\{\{[<%]\s*(?P<shortcode_end>/)?\s*(?P<shortcode>highlight|code)\b[^{}]*?(?P<self_closing>/)?[>%]\}\}"
)

def markdown_code_lines(tokens: list[Token]) -> set[int]:
    """Lines (0-based) inside fenced or indented code, where template tags are only text."""
    lines: set[int] = set()
    for token in tokens:
        if token.type in {"fence", "code_block"} and token.map:
            lines.update(range(token.map[0], token.map[1]))
    return lines


def template_code_spans(body: str, code_lines: set[int]) -> list[tuple[int, int]]:
    """(start, end) of each Liquid or Hugo code block: an opening tag to the next closing one.

    An opening tag with no closing tag after it is left as text rather than hiding the rest of
    the post. Tags shown inside markdown code are examples, not blocks.
    """
    tags = list(_outside_lines(_CODE_TAG.finditer(body), body, code_lines))
    closers: dict[str, list[int]] = {}
    for index, tag in enumerate(tags):
        if tag.group("liquid_end") or tag.group("shortcode_end"):
            closers.setdefault(_tag_name(tag), []).append(index)
    spans: list[tuple[int, int]] = []
    index = 0
    while index < len(tags):
        tag = tags[index]
        closer = _next_closer(tag, index, closers)
        if closer is None:
            index += 1
            continue
        spans.append((tag.start(), tags[closer].end()))
        index = closer + 1
    return spans


def _outside_lines(tags: Iterator[re.Match[str]], body: str, lines: set[int]) -> Iterator[re.Match[str]]:
    # Counts newlines between consecutive tags only, so finding every tag's line stays linear.
    line, position = 0, 0
    for tag in tags:
        line += body.count("\n", position, tag.start())
        position = tag.start()
        if line not in lines:
            yield tag


def _tag_name(tag: re.Match[str]) -> str:
    # Liquid and Hugo blocks close only their own kind: {% endhighlight %} never ends {{< highlight >}}.
    return "liquid:" + tag.group("liquid") if tag.group("liquid") else "shortcode:" + tag.group("shortcode")


def _next_closer(tag: re.Match[str], index: int, closers: dict[str, list[int]]) -> int | None:
    if tag.group("liquid_end") or tag.group("shortcode_end") or tag.group("self_closing"):
        return None
    candidates = closers.get(_tag_name(tag), [])
    after = bisect.bisect_right(candidates, index)
    return candidates[after] if after < len(candidates) else None


def hide_spans(body: str, spans: list[tuple[int, int]]) -> str:
    # Keep only the newlines of a hidden span: every later line number stays right, and no
    # leftover spaces can turn the text after a span into an indented code block.
    pieces: list[str] = []
    cursor = 0
    for start, end in spans:
        pieces.append(body[cursor:start])
        pieces.append("\n" * body.count("\n", start, end))
        cursor = end
    pieces.append(body[cursor:])
    return "".join(pieces)
