"""Hugo, Astro and Jekyll page bundles: posts/<name>/index.md is the post <name>."""

from __future__ import annotations

from pathlib import Path

import pytest

from blogimg.config import Settings
from blogimg.errors import InputError
from blogimg.pipeline.generate import read_posts


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_bundle_post_is_named_after_its_folder(tmp_path: Path) -> None:
    posts = tmp_path / "posts"
    write(posts / "_index.md", "Section page.\n")
    write(posts / "first-trip" / "index.md", "---\ntitle: A Title\n---\nBody.\n")
    write(posts / "Second Trip" / "INDEX.Markdown", "Body.\n")
    write(posts / "third" / "index.md", "---\nslug: chosen-in-front-matter\n---\nBody.\n")
    write(posts / "plain-post.md", "Body.\n")
    slugs = {post.slug for post in read_posts([posts], Settings())}
    assert slugs == {"posts", "first-trip", "second-trip", "chosen-in-front-matter", "plain-post"}


def test_a_bundle_without_a_title_takes_its_title_from_the_folder(tmp_path: Path) -> None:
    write(tmp_path / "my-trip" / "index.md", "Body.\n")
    [post] = read_posts([tmp_path / "my-trip" / "index.md"], Settings())
    assert (post.slug, post.title) == ("my-trip", "My trip")


def test_two_posts_that_really_share_a_slug_are_still_refused(tmp_path: Path) -> None:
    write(tmp_path / "trip" / "index.md", "Body.\n")
    write(tmp_path / "trip.md", "Body.\n")
    with pytest.raises(InputError, match="same slug 'trip'; give one a 'slug:' in its front matter"):
        read_posts([tmp_path], Settings())
