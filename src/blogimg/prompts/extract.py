"""Markdown with front matter → the images a post needs.

Rules (the seed's ImagePromptExtractor, made deterministic):

- ``images: false`` in front matter opts the post out.
- A cover prompt from title, summary and tags; ``cover_prompt:`` replaces it.
- Every ``<!-- image: what to show | alt: text | size: 1024x1024 -->`` marker is an inline
  prompt at its position; a post may hold at most :data:`MAX_MARKERS` of them. Markers inside
  code fences, indented code or inline code are text, not markers, because we read the
  markdown with a real parser rather than a regex. Liquid
  blocks (``{% highlight %}``, ``{% raw %}``, ``{% comment %}``) and Hugo code shortcodes
  (``{{< highlight >}}``, ``{{< code >}}``, also in ``{{% %}}`` form) are code too; the parser
  does not know them, so they are hidden from it (lines kept) before the markers are read.
- With section images enabled, each H2 section without a marker of its own gets one prompt
  (capped per post).

The slug is, first that exists: the slug the caller chose, front matter ``slug:``, the file's
name (a page bundle's folder), the title, a hash of the text; two posts never share one by accident.

Every prompt has a fingerprint: a hash of what defines the image (kind, text, size and which
occurrence of identical text it is), not of its position, so editing a post around a marker
does not regenerate it.

Every step is linear in the post's length, whatever it holds (hundreds of thousands of unclosed
``<!--``, a marker per byte): a post arrives from anyone who may call the API.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TypedDict, Unpack

from markdown_it import MarkdownIt
from markdown_it.token import Token

from blogimg.domain import ExtractedPost, ImagePrompt, PromptKind, Size, fingerprint
from blogimg.errors import InputError, PostParseError
from blogimg.prompts.front_matter import split_front_matter
from blogimg.prompts.post_file import read_post_bytes
from blogimg.prompts.template_code import hide_spans, markdown_code_lines, template_code_spans

MARKDOWN_SUFFIXES = frozenset({".md", ".markdown", ".mdown", ".mkd"})
#: Inline images one post may ask for: each is a paid provider call, and no post needs more.
MAX_MARKERS = 100
# What follows "<!--" in a marker; the body up to "-->" is found with str.find (see _marker_bodies).
_MARKER_NAME = re.compile(r"\s*image\s*:", re.IGNORECASE)
_OPTION = re.compile(r"^(?P<key>alt|size)\s*:\s*(?P<value>.*)$", re.IGNORECASE | re.DOTALL)
_WHITESPACE = re.compile(r"\s+")
# Hugo and Jekyll name a page bundle's post after its folder: posts/my-trip/index.md.
_BUNDLE_FILE_STEMS = frozenset({"index", "_index"})
_MAX_PROMPT_CHARS = 4000


@dataclass(frozen=True, slots=True)
class _Marker:
    prompt: str
    alt: str
    size: Size | None
    line: int | None
    heading: str


class PromptExtractor:
    """Turns one post's markdown into an :class:`ExtractedPost`; pure and deterministic."""

    def __init__(
        self,
        *,
        cover_size: Size = Size(1536, 1024),
        inline_size: Size = Size(1024, 1024),
        section_images: bool = False,
        max_section_images: int = 3,
    ) -> None:
        self.cover_size = cover_size
        self.inline_size = inline_size
        self.section_images = section_images
        self.max_section_images = max_section_images
        # "commonmark" keeps raw HTML (our markers) as html tokens and code as code tokens.
        self._parser = MarkdownIt("commonmark")

    def extract(
        self, text: str, *, source: str = "<post>", slug: str = "", default_slug: str = ""
    ) -> ExtractedPost:
        """Parse ``text`` (markdown with optional front matter); raise PostParseError if unreadable.

        ``slug`` is the caller's choice and wins over front matter; ``default_slug`` (a file's
        name) is used only when front matter names no slug.
        """
        metadata, body, line_offset = split_front_matter(text, source)
        tokens = self._parse(body)
        named_title = _text(metadata.get("title")) or _first_h1(tokens)
        title = named_title or _title_from_slug(slug or default_slug)
        post_slug = _first_slug(slug, _text(metadata.get("slug")), default_slug, named_title) or _content_slug(text)
        summary = _text(
            metadata.get("summary") or metadata.get("description") or metadata.get("excerpt")
        ) or _first_paragraph(tokens)
        tags = _tags(metadata.get("tags"), source)
        language = _text(metadata.get("lang") or metadata.get("language")) or "en"
        source_path = None if source == "<post>" else source

        def post(prompts: tuple[ImagePrompt, ...], *, opted_out: bool = False) -> ExtractedPost:
            return ExtractedPost(
                slug=post_slug, title=title, markdown=text, summary=summary, tags=tags,
                language=language, prompts=prompts, opted_out=opted_out, source_path=source_path,
            )

        images_flag = metadata.get("images", True)
        if images_flag is False or str(images_flag).lower() in {"false", "no", "off", "0"}:
            return post((), opted_out=True)
        if not body.strip() and not metadata:
            # An empty file: nothing to illustrate and no title worth a cover.
            return post(())

        prompts: list[ImagePrompt] = []
        seen: dict[tuple[str, str, str], int] = {}

        def add(kind: PromptKind, prompt: str, size: Size, alt: str, heading: str, line: int | None) -> None:
            prompt = _clean(prompt)[:_MAX_PROMPT_CHARS]
            identity = (kind.value, prompt.casefold(), str(size))
            occurrence = seen.get(identity, 0)
            seen[identity] = occurrence + 1
            prompts.append(
                ImagePrompt(
                    kind=kind, position=len(prompts), prompt=prompt, size=size,
                    fingerprint=fingerprint(kind, prompt, size, occurrence),
                    alt_hint=_clean(alt), heading=heading, line=line,
                )
            )

        cover_override = _text(metadata.get("cover_prompt"))
        cover = cover_override or _cover_prompt(title, summary, tags)
        add(PromptKind.COVER, cover, self.cover_size, "", "", None)

        # One past the cap is enough to refuse: a post of a million markers is not read to its end.
        markers = list(islice(_markers(tokens, source, line_offset), MAX_MARKERS + 1))
        if len(markers) > MAX_MARKERS:
            raise PostParseError(f"{source}: more than {MAX_MARKERS} image markers; blogimg makes at most "
                                 f"{MAX_MARKERS} inline images per post")
        for marker in markers:
            add(PromptKind.INLINE, marker.prompt, marker.size or self.inline_size,
                marker.alt, marker.heading, marker.line)

        if self.section_images and self.max_section_images > 0:
            illustrated = {marker.heading for marker in markers}
            sections = [s for s in _sections(tokens) if s[0] not in illustrated]
            for heading, first_text, line in sections[: self.max_section_images]:
                add(PromptKind.SECTION, _section_prompt(title, heading, first_text),
                    self.inline_size, "", heading, line + line_offset if line else None)
        return post(tuple(prompts))

    def _parse(self, body: str) -> list[Token]:
        """Tokens of ``body`` with its Liquid and Hugo code blocks hidden, line numbers kept."""
        tokens = self._parser.parse(body)
        spans = template_code_spans(body, markdown_code_lines(tokens))
        if not spans:
            return tokens
        return self._parser.parse(hide_spans(body, spans))


class ExtractorOptions(TypedDict, total=False):
    """The keyword arguments of :class:`PromptExtractor`."""

    cover_size: Size
    inline_size: Size
    section_images: bool
    max_section_images: int


def extract_post(text: str, **options: Unpack[ExtractorOptions]) -> ExtractedPost:
    """Extract with default rules; a convenience for scripts and tests."""
    return PromptExtractor(**options).extract(text)


def read_post_file(path: Path, extractor: PromptExtractor) -> ExtractedPost:
    """Read and extract one markdown file; one clear error for anything unreadable."""
    if path.suffix.lower() not in MARKDOWN_SUFFIXES:
        raise InputError(f"{path}: not a markdown file (expected one of .md, .markdown)")
    raw = read_post_bytes(path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise PostParseError(f"{path}: not UTF-8 text (byte {error.start})") from None
    if "\x00" in text:
        raise PostParseError(f"{path}: contains NUL bytes; not a text file")
    return extractor.extract(text, source=str(path), default_slug=_file_slug(path))


def _file_slug(path: Path) -> str:
    """The name a file gives its post: the folder's for a page bundle (a/index.md), else the file's."""
    if path.stem.casefold() in _BUNDLE_FILE_STEMS:
        return path.absolute().parent.name
    return path.stem


def slugify(text: str) -> str:
    """Lower-case words joined by hyphens; letters of any script are kept."""
    normal = unicodedata.normalize("NFKC", text).lower()
    return re.sub(r"[^\w]+", "-", normal).strip("-_")[:120]


def _first_slug(*candidates: str) -> str:
    for candidate in candidates:
        slug = slugify(candidate)
        if slug:
            return slug
    return ""


def _content_slug(text: str) -> str:
    # Nothing names the post, so its text does: a constant ("untitled") would make the next
    # unnamed post replace this one, because posts are matched by slug when saved.
    return "post-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def _markers(tokens: list[Token], source: str, line_offset: int) -> Iterator[_Marker]:
    heading = ""
    pending_heading = False
    for token in tokens:
        if token.type == "heading_open":
            pending_heading = token.tag == "h2"
            continue
        if token.type == "inline" and pending_heading:
            heading = _clean(token.content)
            pending_heading = False
        if token.type == "html_block":
            yield from _markers_in(token.content, token.map, source, heading, line_offset)
        elif token.type == "inline":
            for child in token.children or []:
                if child.type == "html_inline":
                    yield from _markers_in(child.content, token.map, source, heading, line_offset)


def _markers_in(html: str, line_map: list[int] | None, source: str, heading: str,
                line_offset: int) -> Iterator[_Marker]:
    lines_before, counted_to = 0, 0
    for start, body in _marker_bodies(html):
        prompt, alt, size = "", "", None
        for index, part in enumerate(body.split("|")):
            option = _OPTION.match(part.strip())
            if index > 0 and option:
                key, value = option.group("key").lower(), option.group("value").strip()
                if key == "alt":
                    alt = value
                else:
                    try:
                        size = Size.parse(value)
                    except InputError as error:
                        raise PostParseError(f"{source}: image marker: {error}") from None
            elif index == 0:
                prompt = part
            else:
                prompt += "|" + part
        # Newlines counted from the previous marker on, not from the start: many markers in
        # one HTML block would otherwise cost the square of their number.
        lines_before += html.count("\n", counted_to, start)
        counted_to = start
        line = line_offset + line_map[0] + 1 + lines_before if line_map else None
        if not _clean(prompt):
            raise PostParseError(f"{source}: line {line}: image marker has no description")
        yield _Marker(prompt=prompt, alt=alt, size=size, line=line, heading=heading)


def _marker_bodies(html: str) -> Iterator[tuple[int, str]]:
    """(offset, body) of every ``<!-- image: body -->`` in ``html``, in one pass.

    The same matches as the regex ``<!--\\s*image\\s*:(.*?)-->``, which retries each unclosed
    ``<!--`` to the end of the text: quadratic in their number (4 MB of them never finished).
    Here a marker with no ``-->`` after it ends the search, since none follows a later one either.
    """
    position = 0
    while (start := html.find("<!--", position)) != -1:
        name = _MARKER_NAME.match(html, start + 4)
        if name is None:
            position = start + 1
            continue
        end = html.find("-->", name.end())
        if end == -1:
            return
        yield start, html[name.end():end]
        position = end + 3


def _sections(tokens: list[Token]) -> list[tuple[str, str, int | None]]:
    sections: list[tuple[str, str, int | None]] = []
    for index, token in enumerate(tokens):
        if token.type == "heading_open" and token.tag == "h2":
            heading = _clean(tokens[index + 1].content)
            first = ""
            # By index, not a slice: copying the rest of the list for each heading is quadratic.
            for position in range(index + 3, len(tokens)):
                later = tokens[position]
                if later.type == "heading_open" and later.tag in {"h1", "h2"}:
                    break
                if later.type == "inline" and later.content.strip():
                    first = _plain(later)
                    break
            line = token.map[0] + 1 if token.map else None
            sections.append((heading, first, line))
    return sections


def _first_h1(tokens: list[Token]) -> str:
    for index, token in enumerate(tokens):
        if token.type == "heading_open" and token.tag == "h1":
            return _clean(tokens[index + 1].content)
    return ""


def _first_paragraph(tokens: list[Token]) -> str:
    for index, token in enumerate(tokens):
        if token.type == "paragraph_open" and index + 1 < len(tokens):
            text = _plain(tokens[index + 1])
            if text:
                return text[:300]
    return ""


def _plain(token: Token) -> str:
    # Visible text of an inline token: markers, HTML and link targets dropped.
    parts = [
        child.content
        for child in token.children or []
        if child.type in {"text", "code_inline"}
    ]
    return _clean(" ".join(parts))


def _cover_prompt(title: str, summary: str, tags: tuple[str, ...]) -> str:
    parts = [f'Editorial cover illustration for a blog post titled "{title}".']
    if summary:
        ending = "" if summary[-1] in ".!?…" else "."
        parts.append(f"The post is about: {summary}{ending}")
    if tags:
        parts.append("Themes: " + ", ".join(tags) + ".")
    parts.append("Clean composition, no text or lettering in the image.")
    return " ".join(parts)


def _section_prompt(title: str, heading: str, first_text: str) -> str:
    text = f'Illustration for the section "{heading}" of a blog post titled "{title}".'
    if first_text:
        text += f" The section begins: {first_text[:240]}"
    return text + " No text or lettering in the image."


def _tags(value: object, source: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        items = [part for part in re.split(r"[,\s]+", value) if part]
    elif isinstance(value, list):
        items = [_text(item) for item in value]
    else:
        raise PostParseError(f"{source}: front matter 'tags' must be a list or a comma-separated string")
    return tuple(dict.fromkeys(item for item in items if item))


def _text(value: object) -> str:
    if value is None:
        return ""
    return _clean(str(value))


def _clean(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


def _title_from_slug(slug: str) -> str:
    return _clean(slug.replace("-", " ").replace("_", " ")).capitalize() or "Untitled"
