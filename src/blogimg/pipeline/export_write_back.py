"""``blogimg export --write-back``: each image's markup put into its post, the cover into front matter.

- The markup goes on the line after its ``<!-- image: … -->`` marker, which stays (it is what
  ties the image to the post), between ``<!-- blogimg:image id=N -->`` and ``<!-- /blogimg -->``
  on that one line. A later run replaces what is between them, so running twice changes nothing.
  One line, because Markdown ends an HTML block that begins with a comment at the line holding
  its ``-->``: the text after the block stays Markdown, whatever follows the marker.
- The cover's URL is set as ``image:`` in the front matter (``image = "…"`` in TOML), the key
  most themes and SEO plugins read; a post without front matter gets a YAML one. An ``image:``
  that holds a mapping or list is the author's and is left alone.
- A post is written only when every image it asks for is made: a half-illustrated post is left
  as it was, and the command says how many images it is waiting for.
- Line endings (CRLF stays CRLF), a UTF-8 BOM and the file's permissions are kept; the file is
  replaced atomically. Section images (no marker) are exported but not inserted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from blogimg.domain import ExtractedPost, PromptKind
from blogimg.errors import InputError
from blogimg.pipeline.export_files import write_atomically
from blogimg.pipeline.export_manifest import PostManifest
from blogimg.prompts.extract import PromptExtractor, read_post_file
from blogimg.prompts.post_file import read_post_bytes

BOM = b"\xef\xbb\xbf"
_MARKER_START = re.compile(r"<!--\s*image\s*:", re.IGNORECASE)
# What an earlier run put after a marker: the newline, then the block on one line.
_INSERTED = re.compile(r"\r?\n<!-- blogimg:image id=\d+ -->[^\r\n]*?<!-- /blogimg -->")
_YAML_FRONT = re.compile(r"\A---[ \t]*\r?\n(?:.*?\r?\n)??(?=^(?:---|\.\.\.)[ \t]*\r?$)", re.DOTALL | re.MULTILINE)
_TOML_FRONT = re.compile(r"\A\+\+\+[ \t]*\r?\n(?:.*?\r?\n)??(?=^\+\+\+[ \t]*\r?$)", re.DOTALL | re.MULTILINE)
_YAML_IMAGE = re.compile(r"^image[ \t]*:[ \t]*(?P<value>[^\r\n]*?)[ \t]*(?=\r?$)", re.MULTILINE)
_TOML_IMAGE = re.compile(r"^image[ \t]*=[ \t]*(?P<value>[^\r\n]*?)[ \t]*(?=\r?$)", re.MULTILINE)


@dataclass(slots=True)
class WriteBackReport:
    changed: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  #: and why


def write_back(paths: Iterable[Path], manifests: Sequence[PostManifest], extractor: PromptExtractor) -> WriteBackReport:
    """Put the made images into these post files; the manifests come from the catalogue."""
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
        updated = with_images(text, post, manifest)
        if updated == text:
            report.unchanged.append(path)
            continue
        try:
            write_atomically(path, (BOM if bom else b"") + updated.encode())
        except OSError as error:
            raise InputError(f"{path}: cannot be written: {error.strerror or error}") from None
        report.changed.append(path)
    return report


def with_images(text: str, post: ExtractedPost, manifest: PostManifest) -> str:
    """``text`` with each inline image's markup after its marker and the cover in front matter."""
    newline = "\r\n" if "\r\n" in text else "\n"
    line_starts = [0] + [match.end() for match in re.finditer("\n", text)]
    edits: list[tuple[int, int, str]] = []
    seen_on_line: dict[int, int] = {}
    for prompt in post.prompts:
        if prompt.kind != PromptKind.INLINE or prompt.line is None:
            continue
        occurrence = seen_on_line.get(prompt.line, 0)
        seen_on_line[prompt.line] = occurrence + 1
        end = _marker_end(text, line_starts[prompt.line - 1], occurrence)
        if end is None:  # the extractor found it, so this does not happen; never guess a place
            continue
        entry = manifest.by_fingerprint[prompt.fingerprint]
        markup = "".join(line.strip() for line in entry["markup"].splitlines())
        block = f"{newline}<!-- blogimg:image id={entry['id']} -->{markup}<!-- /blogimg -->"
        earlier = _INSERTED.match(text, end)
        edits.append((end, earlier.end() if earlier else end, block))
    for start, stop, replacement in sorted(edits, reverse=True):  # from the end: offsets stay valid
        text = text[:start] + replacement + text[stop:]
    cover = manifest.data.get("cover")
    return with_cover(text, cover, newline) if cover else text


def _marker_end(text: str, line_start: int, occurrence: int) -> int | None:
    """The offset just past the ``-->`` of the marker that begins on this line (the nth on it)."""
    position = line_start
    for _ in range(occurrence + 1):
        match = _MARKER_START.search(text, position)
        if match is None:
            return None
        position = match.end()
    end = text.find("-->", position)
    return None if end == -1 else end + 3


def with_cover(text: str, url: str, newline: str) -> str:
    """``text`` with ``image`` set to ``url`` in its front matter (YAML or TOML, as it has)."""
    quoted = json.dumps(url, ensure_ascii=False)  # a valid YAML and TOML string alike
    for front, key, setting in ((_YAML_FRONT, _YAML_IMAGE, f"image: {quoted}"),
                                (_TOML_FRONT, _TOML_IMAGE, f"image = {quoted}")):
        matter = front.match(text)
        if matter is None:
            continue
        existing = key.search(text, 0, matter.end())
        if existing is None:
            return text[:matter.end()] + setting + newline + text[matter.end():]
        value = existing.group("value")
        if not value or value.startswith(("|", ">", "[", "{", "#")) or _unquoted(value) == url:
            return text  # the author's structure, or already set
        return text[:existing.start()] + setting + text[existing.end():]
    return f"---{newline}image: {quoted}{newline}---{newline}" + text


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
