"""Prompt extraction on ordinary and tricky markdown."""

from __future__ import annotations

from pathlib import Path

import pytest

from blogimg.domain import PromptKind, Size
from blogimg.errors import InputError, PostParseError
from blogimg.prompts.extract import PromptExtractor, fingerprint, read_post_file, slugify

POST = """---
title: Testing Markers
tags: [one, two]
---
Intro paragraph.

<!-- image: a red bicycle leaning on a wall | alt: A red bicycle | size: 1536x1024 -->

## Code

```markdown
<!-- image: inside a fence -->
```

    <!-- image: inside indented code -->

Some `<!-- image: inside inline code -->` text and an inline <!-- image: a blue kite --> marker.

~~~
<!-- image: inside a tilde fence -->
~~~
"""


def extract(text: str, **options) -> object:
    return PromptExtractor(**options).extract(text)


def test_markers_in_code_are_ignored_and_real_ones_kept_in_order() -> None:
    post = extract(POST)
    inline = [p for p in post.prompts if p.kind is PromptKind.INLINE]
    assert [p.prompt for p in inline] == ["a red bicycle leaning on a wall", "a blue kite"]
    assert inline[0].alt_hint == "A red bicycle"
    assert inline[0].size == Size(1536, 1024)
    assert inline[1].size == Size(1024, 1024)
    assert inline[1].heading == "Code"
    assert [p.position for p in post.prompts] == [0, 1, 2]
    assert inline[0].line == 7  # 1-based line in the file, front matter included


def test_cover_prompt_uses_title_summary_and_tags() -> None:
    post = extract(POST)
    cover = post.prompts[0]
    assert cover.kind is PromptKind.COVER
    assert "Testing Markers" in cover.prompt and "one, two" in cover.prompt
    assert cover.size == Size(1536, 1024)


def test_cover_prompt_override_and_opt_out() -> None:
    post = extract("---\ntitle: T\ncover_prompt: a lighthouse at dusk\n---\nBody")
    assert post.prompts[0].prompt == "a lighthouse at dusk"
    opted = extract("---\ntitle: T\nimages: false\n---\nBody <!-- image: x -->")
    assert opted.opted_out and opted.prompts == ()


def test_unicode_titles_slugs_and_prompts() -> None:
    post = extract("---\ntitle: \"Kyoto: 紅葉 und Grüße\"\n---\n<!-- image: 紅葉の庭園、朝の光 -->\n")
    assert post.slug == "kyoto-紅葉-und-grüße"
    assert post.prompts[1].prompt == "紅葉の庭園、朝の光"
    assert slugify("  Ünïcode — Ça va?  ") == "ünïcode-ça-va"


def test_empty_post_needs_no_images() -> None:
    assert extract("").prompts == ()
    assert extract("   \n\n").prompts == ()


def test_broken_front_matter_is_one_clear_error() -> None:
    with pytest.raises(PostParseError, match=r"front matter is not valid YAML at line \d+"):
        extract("---\ntitle: [unclosed\ntags: x\n---\nbody", )
    with pytest.raises(PostParseError, match="must be a mapping"):
        extract("---\n- just\n- a list\n---\nbody")


def test_marker_with_bad_size_or_no_description_is_an_error() -> None:
    with pytest.raises(PostParseError, match="not WIDTHxHEIGHT"):
        extract("<!-- image: a cat | size: huge -->")
    with pytest.raises(PostParseError, match="has no description"):
        extract("Text\n\n<!-- image:   -->")


def test_fingerprints_are_stable_and_ignore_position() -> None:
    first = extract("---\ntitle: T\n---\n<!-- image: a fox -->\n")
    moved = extract("---\ntitle: T\n---\nNew paragraph first.\n\n## New section\n\n<!-- image: a fox -->\n")
    assert first.prompts[1].fingerprint == moved.prompts[1].fingerprint
    assert first.prompts[1].fingerprint == fingerprint(PromptKind.INLINE, "a fox", Size(1024, 1024))
    twice = extract("<!-- image: a fox -->\n\n<!-- image: a fox -->\n")
    fingerprints = [p.fingerprint for p in twice.prompts]
    assert len(set(fingerprints)) == len(fingerprints) == 3


def test_section_images_are_capped_and_skip_illustrated_sections() -> None:
    body = "\n".join(f"## Section {n}\n\nText of section {n}.\n" for n in range(1, 7))
    body += "\n<!-- image: already illustrated -->\n"  # belongs to section 6
    post = extract("---\ntitle: T\n---\n" + body, section_images=True, max_section_images=3)
    sections = [p for p in post.prompts if p.kind is PromptKind.SECTION]
    assert [p.heading for p in sections] == ["Section 1", "Section 2", "Section 3"]
    assert "Text of section 1" in sections[0].prompt
    assert not [p for p in extract(body).prompts if p.kind is PromptKind.SECTION]


def test_read_post_file_errors(tmp_path: Path) -> None:
    extractor = PromptExtractor()
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello")
    with pytest.raises(InputError, match="not a markdown file"):
        read_post_file(text_file, extractor)
    binary = tmp_path / "image.md"
    binary.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF")
    with pytest.raises(PostParseError, match="not UTF-8"):
        read_post_file(binary, extractor)
    post = tmp_path / "my-first-post.md"
    post.write_text("Just text.\n")
    extracted = read_post_file(post, extractor)
    assert extracted.slug == "my-first-post" and extracted.title == "My first post"
