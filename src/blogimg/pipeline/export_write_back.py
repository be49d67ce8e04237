"""``blogimg export --write-back``: each image's markup put into its post, the cover into front matter.

- The markup goes on the line after its ``<!-- image: … -->`` marker, which stays (it is what
  ties the image to the post), between ``<!-- blogimg:image id=N -->`` and ``<!-- /blogimg -->``
  on that one line. A later run replaces what is between them, so running twice changes nothing.
  One line, because Markdown ends an HTML block that begins with a comment at the line holding
  its ``-->``: the text after the block stays Markdown, whatever follows the marker.
- The inserted line takes the marker line's container prefix (indentation, ``>`` of a quote, a
  list item's marker as spaces), so it stays inside the quote or list. A marker that is not alone
  on its line (text before or after it, two on a line) cannot take a block of its own without
  cutting the paragraph around it: that post is skipped, with the reason.
- The cover's URL (the master's) is set as ``image:`` in YAML front matter, the key most themes
  and SEO plugins read; a post without front matter gets one. Only an ``image:`` that is empty or
  that blogimg wrote (a URL under the storage's public prefix) is replaced, keeping a trailing
  ``# comment``: any other value is the author's. TOML (``+++``) front matter is not read by the
  prompt extractor, so it is never edited: such a post gets its inline images and a note.
- Nothing may change what a post asks for: the new text is read again with the pipeline's own
  extractor, and a post whose prompt fingerprints would change (a new paid image on the next
  ``generate``) is skipped, with the reason.
- A post is written only when every image it asks for is made: a half-illustrated post is left
  as it was, and the command says how many images it is waiting for.
- Line endings (CRLF stays CRLF, CR stays CR), a UTF-8 BOM and the file's permissions are kept; the file is
  replaced atomically. Section images (no marker) are exported but not inserted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from blogimg.domain import ExtractedPost, PromptKind
from blogimg.errors import InputError, PostParseError
from blogimg.pipeline.export_files import write_atomically
from blogimg.pipeline.export_manifest import PostManifest
from blogimg.prompts.extract import PromptExtractor, read_post_file
from blogimg.prompts.post_file import read_post_bytes

BOM = b"\xef\xbb\xbf"
_MARKER_START = re.compile(r"<!--\s*image\s*:", re.IGNORECASE)
# What holds a marker line inside its containers: indentation, the ">" of block quotes and at most
# one list item's marker. A marker after anything else shares its line with text.
_CONTAINER = re.compile(r"[ \t>]*(?:(?:[-+*]|\d{1,9}[.)])[ \t]+)?")
_LIST_MARK = re.compile(r"[-+*]|\d{1,9}[.)]")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # markdown-it counts lines by all three, and so do we
_LINE_REST = re.compile(r"[^\r\n]*")
# What an earlier run put after a marker: the line break, the container prefix, the block on one line.
_INSERTED = re.compile(r"(?:\r\n|\r|\n)[ \t>]*<!-- blogimg:image id=\d+ -->[^\r\n]*?<!-- /blogimg -->")
_YAML_FRONT = re.compile(r"\A---[ \t]*\r?\n(?:.*?\r?\n)??(?=^(?:---|\.\.\.)[ \t]*\r?$)", re.DOTALL | re.MULTILINE)
_YAML_IMAGE = re.compile(r"^image[ \t]*:(?P<rest>(?:[ \t][^\r\n]*)?)(?=\r?$)", re.MULTILINE)
# The value of a one-line YAML scalar and what follows it: a double- or single-quoted string or a
# plain scalar (which ends before " #"), then nothing or a comment.
_YAML_VALUE = re.compile(r"""[ \t]*?(?P<value>"(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|(?:[^ \t#](?:[^ \t]|[ \t]+(?![ \t]|#|$))*)?)"""
                         r"(?P<comment>[ \t]+#.*|[ \t]*)\Z")
_EMPTY_VALUES = frozenset({"", '""', "''", "~", "null", "Null", "NULL"})


class _Refused(Exception):
    """This post cannot take its images without changing how it reads; the message says why."""


@dataclass(slots=True)
class WriteBackReport:
    changed: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  #: and why
    notes: list[tuple[Path, str]] = field(default_factory=list)  #: what was left undone in a written post


def write_back(paths: Iterable[Path], manifests: Sequence[PostManifest], extractor: PromptExtractor,
               *, url_prefix: str | None = None) -> WriteBackReport:
    """Put the made images into these post files; the manifests come from the catalogue.

    ``url_prefix`` is the start of every URL the storage gives: a cover under it was set by blogimg
    and may be replaced.
    """
    by_slug = {manifest.slug: manifest for manifest in manifests}
    report = WriteBackReport()
    for path in paths:
        post = read_post_file(path, extractor)
        manifest = by_slug.get(post.slug)
        if manifest is None:
            report.skipped.append((path, f"post {post.slug!r} is not in the catalogue; run blogimg generate first"))
            continue
        if not post.prompts:
            report.unchanged.append(path)
            continue
        waiting = [prompt for prompt in post.prompts if prompt.fingerprint not in manifest.by_fingerprint]
        if waiting:
            report.skipped.append((path, f"{len(waiting)} of {len(post.prompts)} images not made yet"))
            continue
        raw = read_post_bytes(path)
        bom = raw.startswith(BOM)
        text = raw[len(BOM):].decode() if bom else raw.decode()
        try:
            updated, notes = with_images(text, post, manifest, url_prefix)
            if updated != text:
                _check_same_prompts(text, updated, post.slug, str(path), extractor)
        except _Refused as refused:
            report.skipped.append((path, str(refused)))
            continue
        report.notes.extend((path, note) for note in notes)
        if updated == text:
            report.unchanged.append(path)
            continue
        try:
            write_atomically(path, (BOM if bom else b"") + updated.encode())
        except OSError as error:
            raise InputError(f"{path}: cannot be written: {error.strerror or error}") from None
        report.changed.append(path)
    return report


def _check_same_prompts(text: str, updated: str, slug: str, source: str, extractor: PromptExtractor) -> None:
    """Refuse ``updated`` if it asks for other images than ``text``: each would be paid for again.

    Both are read with the same name for the post, so only the edit can make them differ.
    """
    try:
        before = extractor.extract(text, source=source, default_slug=slug)
        after = extractor.extract(updated, source=source, default_slug=slug)
    except PostParseError as error:
        raise _Refused(f"the post would not read after the edit: {error}") from None
    old = [prompt.fingerprint for prompt in before.prompts]
    new = [prompt.fingerprint for prompt in after.prompts]
    if old != new:
        changed = len(set(new) - set(old))
        raise _Refused(f"inserting the images would change what the post asks for ({changed} prompt(s) would be "
                       "new images on the next generate); left as it was")


def with_images(text: str, post: ExtractedPost, manifest: PostManifest,
                url_prefix: str | None = None) -> tuple[str, list[str]]:
    """``text`` with each inline image's markup after its marker and the cover in front matter, and
    notes on what was left undone; raises :class:`_Refused` when a marker has no safe place."""
    newline = _newline(text)
    line_starts = [0] + [match.end() for match in _LINE_BREAK.finditer(text)]
    edits: list[tuple[int, int, str]] = []
    inline = [prompt for prompt in post.prompts if prompt.kind == PromptKind.INLINE and prompt.line is not None]
    lines = [prompt.line for prompt in inline]
    for prompt in inline:
        line = prompt.line
        assert line is not None  # filtered just above
        if lines.count(line) > 1:
            raise _Refused(f"line {line}: more than one image marker on the line (or in one paragraph); "
                           "put each on a line of its own")
        if line > len(line_starts):
            raise _Refused(f"line {line}: the image marker cannot be found")
        end, prefix = _marker_place(text, line_starts[line - 1], line)
        entry = manifest.by_fingerprint[prompt.fingerprint]
        markup = "".join(part.strip() for part in entry["markup"].splitlines())
        block = f"{newline}{prefix}<!-- blogimg:image id={entry['id']} -->{markup}<!-- /blogimg -->"
        earlier = _INSERTED.match(text, end)
        edits.append((end, earlier.end() if earlier else end, block))
    for start, stop, replacement in sorted(edits, reverse=True):  # from the end: offsets stay valid
        text = text[:start] + replacement + text[stop:]
    cover = manifest.data.get("cover")
    if not cover:
        return text, []
    return with_cover(text, cover, url_prefix)


def _marker_place(text: str, line_start: int, line: int) -> tuple[int, str]:
    """Where the block goes after the marker beginning on this line (the end of the line holding
    its ``-->``), and the container prefix the block's line needs to stay in the same quote or list."""
    container = _CONTAINER.match(text, line_start)
    assert container is not None  # it matches the empty string
    marker = _MARKER_START.match(text, container.end())
    if marker is None:
        # Text before the marker: it sits inside a paragraph (or the line is not the one the
        # extractor meant), and a block of its own would cut that paragraph in two.
        raise _Refused(f"line {line}: the image marker is not at the start of its line; put it on a line of its own")
    close = text.find("-->", marker.end())
    if close == -1:
        raise _Refused(f"line {line}: the image marker has no end")
    rest = _LINE_REST.match(text, close + 3)
    assert rest is not None  # it matches the empty string
    if rest.group().strip():
        raise _Refused(f"line {line}: text follows the image marker on its line; move it to the next line")
    prefix = _LIST_MARK.sub(lambda mark: " " * len(mark.group()), container.group())
    return rest.end(), prefix


def with_cover(text: str, url: str, url_prefix: str | None = None) -> tuple[str, list[str]]:
    """``text`` with ``image`` set to ``url`` in its YAML front matter, and notes on why not when it is not."""
    newline = _newline(text)
    setting = f"image: {json.dumps(url, ensure_ascii=False)}"  # JSON strings are YAML strings
    if text.startswith("+++"):
        return text, [f"TOML front matter is left alone; set its image yourself: {url}"]
    if newline == "\r":
        return text, [f"front matter is not read with CR line endings; cover not set: {url}"]
    matter = _YAML_FRONT.match(text)
    if matter is None:
        return f"---{newline}{setting}{newline}---{newline}" + text, []
    existing = _YAML_IMAGE.search(text, 0, matter.end())
    if existing is None:
        return text[:matter.end()] + setting + newline + text[matter.end():], []
    scalar = _YAML_VALUE.match(existing.group("rest"))
    value = scalar.group("value") if scalar else None
    if value is not None and _unquoted(value) == url:
        return text, []
    below = text[existing.end():matter.end()].lstrip("\r\n")[:1]
    ours = value is not None and (
        (value in _EMPTY_VALUES and below not in {" ", "\t", "-"})  # empty, and no block under the key
        or (bool(url_prefix) and _unquoted(value).startswith(url_prefix or "")))
    if scalar is None or not ours:
        return text, [f"front matter's image is the author's; cover not set: {url}"]
    return text[:existing.start()] + setting + scalar.group("comment") + text[existing.end():], []


def _newline(text: str) -> str:
    """The line break the file uses: CRLF if it has any, CR if it has only those, else LF."""
    if "\r\n" in text:
        return "\r\n"
    return "\r" if "\r" in text and "\n" not in text else "\n"


def _unquoted(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            loaded = json.loads(value)
        except ValueError:
            return value
        return loaded if isinstance(loaded, str) else value
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("''", "'")
    return value
