"""Where each site generator wants a post's image data, and writing it there atomically.

- ``json``: ``PATH/<slug>.json``, one file per post.
- ``hugo``: data files, ``PATH/data/blogimg/<slug>.json`` (``site.Data.blogimg``): one place for
  every post whatever its layout, where page-bundle resources would need the files copied into
  each bundle; templates look a post up by blogimg's slug: front matter ``slug``, else the file's
  name (a bundle's folder), lower-cased (see tests/fixtures/hugo_site).
- ``jekyll``: ``PATH/_data/blogimg/<slug>.json`` (``site.data.blogimg[page.slug]``).
- ``astro``: a data content collection, ``PATH/src/content/blogimg/<slug>.json``.
- ``eleventy``: global data, ``PATH/_data/blogimg.json``: one object keyed by slug.

A file whose bytes would not change is not rewritten, so a site's watcher does not rebuild.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from blogimg.errors import InputError
from blogimg.pipeline.export_manifest import PostManifest

ExportFormat = Literal["json", "hugo", "jekyll", "astro", "eleventy"]
EXPORT_FORMATS: tuple[str, ...] = get_args(ExportFormat)
#: Per-post folder of each format that writes one file per post, under the export's root.
_POST_FOLDERS: dict[str, tuple[str, ...]] = {
    "json": (), "hugo": ("data", "blogimg"), "jekyll": ("_data", "blogimg"), "astro": ("src", "content", "blogimg"),
}


@dataclass(frozen=True, slots=True)
class ExportReport:
    written: list[Path]
    unchanged: list[Path]


def export_format(name: str) -> ExportFormat:
    """``name`` as an export format, or one clear error."""
    if name not in EXPORT_FORMATS:
        raise InputError(f"unknown export format {name!r}; expected one of {', '.join(EXPORT_FORMATS)}")
    return name  # type: ignore[return-value]  # checked against the Literal's values just above


def export_manifests(manifests: Iterable[PostManifest], root: Path, chosen: ExportFormat) -> ExportReport:
    """Write the manifests of ``chosen`` under ``root`` (created if need be)."""
    export = ManifestExport(root, chosen)
    for manifest in manifests:
        export.add(manifest)
    return export.finish()


class ManifestExport:
    """Writes manifests as they come, one post at a time; Eleventy's one file collects them first."""

    def __init__(self, root: Path, chosen: ExportFormat) -> None:
        if root.exists() and not root.is_dir():
            raise InputError(f"{root}: is not a directory")
        self.root, self.chosen = root, chosen
        self.report = ExportReport([], [])
        self.posts = self.images = 0
        self._collected: dict[str, Any] = {}

    def add(self, manifest: PostManifest) -> None:
        self.posts += 1
        self.images += len(manifest.images)
        if self.chosen == "eleventy":
            self._collected[manifest.slug] = manifest.data
            return
        folder = self.root.joinpath(*_POST_FOLDERS[self.chosen])
        _write(folder / f"{_file_name(manifest.slug)}.json", manifest.data, self.report)

    def finish(self) -> ExportReport:
        if self.chosen == "eleventy":
            _write(self.root / "_data" / "blogimg.json", self._collected, self.report)
        return self.report


def _file_name(slug: str) -> str:
    # Slugs are made of word characters and hyphens (prompts/extract.py), so this never fires for
    # a post blogimg read; it keeps a catalogue edited by hand from writing outside the folder.
    if not slug or slug in {".", ".."} or "/" in slug or "\\" in slug or "\x00" in slug:
        raise InputError(f"post slug {slug!r} cannot be a file name")
    return slug


def _write(path: Path, data: Any, report: ExportReport) -> None:
    content = (json.dumps(data, ensure_ascii=False, indent=2) + "\n").encode()
    try:
        if path.is_file() and path.read_bytes() == content:
            report.unchanged.append(path)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, content)
    except OSError as error:
        raise InputError(f"{path}: cannot be written: {error.strerror or error}") from None
    report.written.append(path)


def write_atomically(path: Path, content: bytes) -> None:
    """Replace ``path`` with ``content`` in one step: a reader sees the old file or the new, never half.

    The temporary file is in the same folder (a rename within one file system is atomic) and
    takes the old file's permissions.
    """
    mode = path.stat().st_mode & 0o7777 if path.exists() else None
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        if mode is not None:
            os.chmod(temporary, mode)
        else:
            os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    # os.umask can only be read by setting it; set it back at once.
    current = os.umask(0o022)
    os.umask(current)
    return current
