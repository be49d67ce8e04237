"""Ready ``<picture>`` markup for an image: what the image view's copy button gives a blog author.

AVIF first, then WebP, as ``<source>`` elements, and an ``<img>`` in the most widely decoded
format with ``srcset``, ``sizes``, ``width``/``height`` (so the page reserves the space before the
file arrives: no layout shift), lazy loading, and the LQIP as a background until it loads.
Every attribute is escaped: alt text is user data, and URLs come from settings.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

#: MIME type of each format a variant may have.
MEDIA_TYPES = {"avif": "image/avif", "webp": "image/webp", "jpeg": "image/jpeg", "jpg": "image/jpeg",
               "png": "image/png"}
#: ``<source>`` order: the smallest files first, since a browser takes the first type it can decode.
SOURCE_ORDER = ("avif", "webp")
#: The ``<img>`` itself: the first of these present, as every browser decodes it.
FALLBACK_ORDER = ("jpeg", "jpg", "png", "webp", "avif")


@dataclass(frozen=True, slots=True)
class PictureVariant:
    """One stored file of the image."""

    format: str
    width: int
    height: int
    url: str


def picture_markup(variants: Iterable[PictureVariant], *, alt: str | None, lqip: str | None = None,
                   sizes: str | None = None, eager: bool = False) -> str:
    """The ``<picture>`` element for these variants; "" when there are none.

    ``sizes`` defaults to "full width up to the largest variant"; the ``<img>``'s ``width`` and
    ``height`` are its largest variant's, so its aspect ratio is right at any rendered width.
    ``eager`` is for a cover: it is above the fold, and lazy loading would delay the page's
    largest paint.
    """
    by_format = variants_by_format(variants)
    fallback = fallback_format(by_format)
    if fallback is None:
        return ""
    largest = max(by_format[fallback].values(), key=lambda variant: variant.width)
    chosen_sizes = sizes or default_sizes(by_format)
    lines = ["<picture>"]
    for name in SOURCE_ORDER:
        if name in by_format and name != fallback:
            lines.append(f'  <source type="{MEDIA_TYPES[name]}" srcset="{_srcset(by_format[name])}" '
                         f'sizes="{_attribute(chosen_sizes)}">')
    image = [f'src="{_attribute(_url(largest.url))}"', f'srcset="{_srcset(by_format[fallback])}"',
             f'sizes="{_attribute(chosen_sizes)}"', f'width="{largest.width}"', f'height="{largest.height}"',
             f'alt="{_attribute(alt or "")}"', f'loading="{"eager" if eager else "lazy"}"', 'decoding="async"']
    if lqip:
        image.append(f'style="{_attribute(_background(lqip))}"')
    lines.append(f"  <img {' '.join(image)}>")
    lines.append("</picture>")
    return "\n".join(lines)


def variants_by_format(variants: Iterable[PictureVariant]) -> dict[str, dict[int, PictureVariant]]:
    """The usable variants by lower-case format, then by width (one entry per width)."""
    by_format: dict[str, dict[int, PictureVariant]] = {}
    for variant in variants:
        name = variant.format.lower()
        if name in MEDIA_TYPES and variant.width > 0 and variant.height > 0:
            by_format.setdefault(name, {})[variant.width] = variant
    return by_format


def fallback_format(by_format: dict[str, dict[int, PictureVariant]]) -> str | None:
    """The format of the ``<img>``: the first of :data:`FALLBACK_ORDER` present."""
    return next((name for name in FALLBACK_ORDER if name in by_format), None)


def default_sizes(by_format: dict[str, dict[int, PictureVariant]]) -> str:
    """Full width up to the widest variant."""
    widest = max(width for files in by_format.values() for width in files)
    return f"(max-width: {widest}px) 100vw, {widest}px"


def srcset_text(files: dict[int, PictureVariant]) -> str:
    """``url 480w, url 768w, …`` for one format, unescaped: what a data file or template needs."""
    return ", ".join(f"{_url(files[width].url)} {width}w" for width in sorted(files))


def _srcset(files: dict[int, PictureVariant]) -> str:
    return _attribute(srcset_text(files))


def _url(url: str) -> str:
    # In a srcset, whitespace ends a URL and a comma at its end is dropped: percent-encode those
    # (and nothing valid in a URL: CDNs such as Cloudinary put commas in their paths).
    encoded = quote(url, safe="/:?#[]@!$&'()*+,;=%-._~")
    return encoded[:-1] + "%2C" if encoded.endswith(",") else encoded


def css_url(url: str) -> str:
    """``url(…)`` for CSS that stays one token whatever ``url`` holds."""
    # The LQIP is our own data: URI, but quotes, parentheses, backslashes, whitespace or "<" in it
    # would end the url() (or the style element or attribute around it); percent-encoding them keeps
    # it one token. What stays (letters, digits, "/:;,=+-._~%") means nothing else in CSS or HTML.
    return f"url({quote(url, safe='/:;,=+-._~%')})"


def _background(lqip: str) -> str:
    return f"background:{css_url(lqip)} center/cover"


def _attribute(value: str) -> str:
    return html.escape(value, quote=True)
