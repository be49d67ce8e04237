"""Alt text derived without a vision model."""

from blogimg.pipeline.alt_text import MAX_ALT_CHARS, derive_alt_text, shorten


def test_author_alt_wins_then_provider_then_prompt() -> None:
    common = dict(kind="inline", prompt="a red kite over hills", title="Kites", summary="About kites")
    assert derive_alt_text(**common, alt_hint="A kite", provider_alt="Card") == "A kite"
    assert derive_alt_text(**common, provider_alt="Card reading Kites") == "Card reading Kites"
    assert derive_alt_text(**common) == "A red kite over hills"
    assert derive_alt_text(kind="cover", prompt="p", title="Kites", summary="") == "Illustration for “Kites”"
    section = derive_alt_text(kind="section", prompt="p", title="Kites", summary="", heading="Wind")
    assert section == "Illustration for the section “Wind” of “Kites”"


def test_long_text_is_cut_at_a_word_with_an_ellipsis() -> None:
    text = "word " * 60
    cut = shorten(text)
    assert len(cut) <= MAX_ALT_CHARS and cut.endswith("word…")
    assert shorten("short and sweet") == "short and sweet"
