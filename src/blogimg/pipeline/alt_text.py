"""Alt text derived from what we know without looking at the image.

Preference: the author's own ``alt:`` → what the provider says it drew (the card knows) →
the marker's description for inline images → a sentence from the post for covers and sections.
When BLOGIMG_ALT_TEXT_VISION names a provider, a vision model's caption of the stored image
replaces this (providers/vision.py); the author's own alt text always wins.
"""

from __future__ import annotations

MAX_ALT_CHARS = 125


def derive_alt_text(
    *, kind: str, prompt: str, title: str, summary: str, heading: str = "", alt_hint: str = "",
    provider_alt: str | None = None, max_chars: int = MAX_ALT_CHARS,
) -> str:
    """One short, plain sentence describing the image, at most ``max_chars`` characters."""
    if alt_hint:
        return shorten(alt_hint, max_chars)
    if provider_alt:
        return shorten(provider_alt, max_chars)
    if kind == "inline":
        return shorten(prompt[:1].upper() + prompt[1:], max_chars)
    if kind == "section" and heading:
        return shorten(f"Illustration for the section “{heading}” of “{title}”", max_chars)
    lead = f"Illustration for “{title}”"
    return shorten(f"{lead}: {summary}" if summary else lead, max_chars)


def shorten(text: str, limit: int = MAX_ALT_CHARS) -> str:
    """Trim at a word boundary and end with an ellipsis when cut."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:—-")
    return cut + "…"
