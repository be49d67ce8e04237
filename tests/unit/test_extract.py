"""Prompt extraction on ordinary and tricky markdown."""

from __future__ import annotations

import time
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


CODE_BLOCKS = {
    "liquid highlight": "{% highlight go %}\n<!-- image: in code -->\n{% endhighlight %}",
    "liquid highlight, trimmed": "{%- highlight ruby linenos -%}\n<!-- image: in code -->\n{%- endhighlight -%}",
    "liquid raw, inline": "Escaped {% raw %}<!-- image: in code -->{% endraw %} here.",
    "liquid comment": "{% comment %}\nDraft:\n\n<!-- image: in code -->\n{% endcomment %}",
    "hugo highlight": '{{< highlight go "hl_lines=2" >}}\n<!-- image: in code -->\n{{< /highlight >}}',
    "hugo code": "{{< code >}}\n<!-- image: in code -->\n{{< /code >}}",
    "hugo code, percent form": "{{% code lang=\"html\" %}}\n<!-- image: in code -->\n{{% /code %}}",
}


@pytest.mark.parametrize("block", CODE_BLOCKS.values(), ids=CODE_BLOCKS.keys())
def test_markers_in_liquid_and_hugo_code_blocks_are_ignored(block: str) -> None:
    post = extract(f"---\ntitle: T\n---\nIntro.\n\n{block}\n\n<!-- image: a real one -->\n")
    inline = [p for p in post.prompts if p.kind is PromptKind.INLINE]
    assert [p.prompt for p in inline] == ["a real one"]
    assert inline[0].line == 8 + block.count("\n")  # hiding a block keeps later line numbers


def test_code_block_tags_shown_in_markdown_code_or_left_open_hide_nothing() -> None:
    text = (
        "```liquid\n{% highlight go %}\n```\n\n<!-- image: between examples -->\n\n"
        "`{{< /code >}}` and ```{% endhighlight %}``` are examples.\n\n"
        "{{< highlight go />}}\n\n<!-- image: after a self-closing shortcode -->\n\n"
        "{{< code >}} never closed\n\n<!-- image: after an unclosed shortcode -->\n"
    )
    inline = [p.prompt for p in extract(text).prompts if p.kind is PromptKind.INLINE]
    assert inline == ["between examples", "after a self-closing shortcode", "after an unclosed shortcode"]


def test_code_blocks_are_not_the_summary_or_the_title() -> None:
    post = extract("{% highlight python %}\n# not a heading\n{% endhighlight %}\n\nThe real intro.\n")
    assert post.summary == "The real intro."
    assert post.title == "Untitled"


def test_finding_code_blocks_stays_linear_on_hostile_input() -> None:
    # A scan that retried every unclosed tag to the end of the line would take minutes here.
    hostile = "{{< code " * 20_000 + "{% raw " * 20_000 + "{% highlight %}" * 20_000
    started = time.perf_counter()
    post = extract(hostile + "\n\n<!-- image: still found -->\n")
    assert time.perf_counter() - started < 5
    assert post.prompts[-1].prompt == "still found"


def test_posts_without_a_name_get_distinct_stable_slugs_from_their_text() -> None:
    first, second = extract("Just some text."), extract("Some other text.")
    assert first.slug != second.slug
    assert first.slug.startswith("post-") and second.slug.startswith("post-")
    assert extract("Just some text.").slug == first.slug
    assert "untitled" not in {first.slug, second.slug, extract("").slug, extract("<!-- image: x -->").slug}


def test_slug_precedence_caller_then_front_matter_then_file_then_title() -> None:
    extractor = PromptExtractor()
    text = "---\ntitle: The Title\nslug: From Front Matter\n---\nBody"
    assert extractor.extract(text, slug="Chosen", default_slug="file-name").slug == "chosen"
    assert extractor.extract(text, default_slug="file-name").slug == "from-front-matter"
    titled = "---\ntitle: The Title\n---\nBody"
    assert extractor.extract(titled, default_slug="file-name").slug == "file-name"
    assert extractor.extract(titled).slug == "the-title"
    assert extractor.extract("# A Heading\n\nBody").slug == "a-heading"
    # A name that slugifies to nothing gives way to the next one rather than to "untitled".
    assert extractor.extract("---\nslug: '!!!'\n---\n# Heading\n").slug == "heading"
    assert extractor.extract("Body", default_slug="---").slug.startswith("post-")
