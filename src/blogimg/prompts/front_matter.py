"""A post's front matter: the YAML between ``---`` lines at its top, read with limits.

YAML lets a hostile post cost far more than its size: a 600-byte "billion laughs" of aliases
(``&a`` … ``*a``) stands for gigabytes once its values are turned into text, and nesting a
hundred thousand levels deep ends in RecursionError. A post's metadata needs neither, so the
loader refuses aliases outright, stops at :data:`MAX_DEPTH` levels, and reads at most
:data:`MAX_FRONT_MATTER_CHARS` characters (pure-Python YAML reads some 150 KB a second at worst).
Integers are written with at most :data:`MAX_INTEGER_CHARS` characters, checked before they are
converted: ``0x…``, ``0…`` (octal), ``0b…`` and YAML 1.1's base 60 (``1:1:1…``) otherwise load
as numbers of tens of thousands of digits that cannot be turned back into text.
Every refusal is one :class:`PostParseError` line naming the post.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import Node, ScalarNode

from blogimg.errors import PostParseError

MAX_FRONT_MATTER_CHARS = 65_536
MAX_DEPTH = 32  #: mappings and lists within one another; real front matter uses two or three
#: Characters of one integer, sign, prefix and separators included. In any base YAML has, this is
#: at most some 1,200 decimal digits: well within the 4,300 that ``str()`` accepts.
MAX_INTEGER_CHARS = 1000

# Linear: anchored at the start, and each position tried for the closing line costs O(1).
_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(?P<yaml>.*?)(?:\r?\n)?^(?:---|\.\.\.)[ \t]*$\r?\n?",
                           re.DOTALL | re.MULTILINE)


def split_front_matter(text: str, source: str) -> tuple[dict[Any, Any], str, int]:
    """(metadata, body, number of lines before the body) of a post; PostParseError if unreadable."""
    match = _FRONT_MATTER.match(text)
    if match is None:
        return {}, text, 0
    document = match.group("yaml")
    if len(document) > MAX_FRONT_MATTER_CHARS:
        raise PostParseError(f"{source}: front matter is longer than {MAX_FRONT_MATTER_CHARS // 1024} KB; "
                             "keep long text in the post's body")
    metadata = _load(document, source) if document.strip() else {}
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise PostParseError(f"{source}: front matter must be a mapping of keys to values")
    return metadata, text[match.end():], text[: match.end()].count("\n")


def _load(document: str, source: str) -> Any:
    loader = _FrontMatterLoader(document)
    try:
        return loader.get_single_data()
    except _Refused as refusal:
        raise PostParseError(f"{source}: {refusal}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 2}" if mark is not None else ""  # +1 for the "---" line
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise PostParseError(f"{source}: front matter is not valid YAML{where}: {problem}") from None
    except (ValueError, OverflowError) as error:
        # SafeLoader's own constructors let these out, a timestamp in year 0 for one. It is front
        # matter nobody can mean, not a fault of ours.
        raise PostParseError(f"{source}: front matter holds a value that cannot be read: {error}") from None
    finally:
        loader.dispose()


class _Refused(Exception):
    """Front matter that parses as YAML but uses what blogimg does not accept."""


class _FrontMatterLoader(yaml.SafeLoader):
    """SafeLoader without aliases, with a nesting limit checked as nodes are composed, and with
    integers limited in length.

    Composing pulls events from the parser one at a time, so a refusal comes as soon as the
    first alias or the level past the limit is read, before the rest of the document is parsed.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(AliasEvent):
            raise _Refused("front matter uses YAML aliases (&/*), which blogimg does not accept; "
                           "write each value out")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"front matter nests lists or mappings more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_yaml_int(self, node: ScalarNode) -> int:
        # Refused by its length as written, before any conversion: int() limits only base 10, and
        # SafeLoader builds a base-60 number digit by digit, each step on an ever larger integer.
        if len(node.value) > MAX_INTEGER_CHARS:
            raise _Refused(f"front matter holds an integer written with more than {MAX_INTEGER_CHARS} "
                           "characters; put it in quotes if it is text")
        return super().construct_yaml_int(node)


_FrontMatterLoader.add_constructor("tag:yaml.org,2002:int", _FrontMatterLoader.construct_yaml_int)
