"""One PNG of every demo image beside its thumbnail: ``make contact-sheet``.

Reads the example posts the way ``blogimg generate`` does, draws each image with the offline
card, runs it through the same imaging as the worker (thumbnail crop included, with the card's
focus) and lays out, one row per image: the card, its 300×300 thumbnail and what the card says
it shows (its alt text). Nothing is stored; no database, no network.

    python -m tools.contact_sheet [POSTS_DIR] [-o OUT.png]
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import pyvips

from blogimg.config import Settings
from blogimg.domain import ImageRequest, PromptKind, Size
from blogimg.imaging.process import ImagingOptions, process_image
from blogimg.pipeline.generate import read_posts
from blogimg.providers.card import CardProvider
from blogimg.providers.card_text import drawable, set_text

ROW = 240  #: height of a row's images
GAP = 16
CAPTION_WIDTH = 520
BACKGROUND = [245, 245, 245]


async def _rows(posts_dir: Path) -> list[tuple[str, pyvips.Image, pyvips.Image]]:
    settings = Settings()
    options = ImagingOptions(variant_widths=(480,), variant_formats=("webp",),
                             thumbnail_size=settings.thumbnail_size)
    provider = CardProvider()
    rows = []
    for post in read_posts([posts_dir], settings):
        if post.opted_out:
            continue
        for prompt in post.prompts:
            request = ImageRequest(prompt=prompt.prompt, size=prompt.size, kind=PromptKind(prompt.kind),
                                   title=post.title, subtitle=prompt.heading or prompt.alt_hint,
                                   tags=tuple(post.tags))
            image = await provider.generate(request)
            processed = await asyncio.to_thread(process_image, image.data, options, image.focus)
            card = pyvips.Image.new_from_buffer(image.data, "")
            thumb = pyvips.Image.new_from_buffer(processed.thumbnail.data, "")
            caption = f"{post.slug} · {prompt.kind} · {Size(card.width, card.height)}\n{image.alt_text}"
            rows.append((caption, card, thumb))
    return rows


def _fit(image: pyvips.Image, height: int) -> pyvips.Image:
    image = image.resize(height / image.height)
    if image.bands == 4:
        image = image.flatten(background=BACKGROUND)
    return image.cast("uchar").copy(interpretation="srgb")


def build_sheet(posts_dir: Path) -> pyvips.Image:
    rows = asyncio.run(_rows(posts_dir))
    lines = []
    for caption, card, thumb in rows:
        card_small, thumb_small = _fit(card, ROW), _fit(thumb, ROW)
        text = _fit(set_text(drawable(caption), weight="Regular", colour="#222222",
                             box_width=CAPTION_WIDTH, box_height=ROW // 3), ROW // 3)
        line = card_small.join(thumb_small, "horizontal", shim=GAP, background=BACKGROUND,
                               expand=True)
        line = line.join(text, "horizontal", shim=GAP, background=BACKGROUND, expand=True)
        lines.append(line)
    width = max(line.width for line in lines)
    sheet = (pyvips.Image.black(width + 2 * GAP, GAP, bands=3) + BACKGROUND).cast("uchar")
    sheet = sheet.copy(interpretation="srgb")
    for line in lines:
        sheet = sheet.join(line.embed(GAP, 0, width + 2 * GAP, line.height + GAP, extend="background",
                                      background=BACKGROUND), "vertical", background=BACKGROUND,
                           expand=True)
    return sheet


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("posts", nargs="?", default="examples/posts", type=Path)
    parser.add_argument("-o", "--output", default="blogimg-data/contact-sheet.png", type=Path)
    args = parser.parse_args(argv)
    sheet = build_sheet(args.posts)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    sheet.pngsave(str(args.output), compression=6)
    print(f"wrote {args.output} ({sheet.width}×{sheet.height})")


if __name__ == "__main__":
    main()
