"""The imaging benchmark's fixed corpus: photographs shipped inside scikit-image, scaled and
centre-cropped to the two sizes blogimg asks providers for, plus `card` provider output.

Every file is a lossless PNG, as providers deliver, so both sides start from the same bytes and the
quality metric has a faithful reference. The corpus is rebuilt deterministically into a cache
folder (ignored by git) and reused while its manifest matches.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pyvips

from bench.common import ROOT

CACHE = ROOT / "bench" / ".corpus"
SIZES = ((1024, 1024), (1536, 1024))
# Colour and grey photographs of different kinds: faces, fur, food, texture, space, micrographs,
# a machine, print. They are 300–1400 px, so most are scaled up, as a 1024-px source would be.
PHOTOS = ("astronaut", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry",
          "stereo_motorcycle", "retina", "rocket", "camera", "brick")
CARD_TITLES = ("Ten lessons from a year of running Postgres", "Why our builds got faster",
               "A field guide to moths of the Alps", "Sourdough at altitude", "Notes on rate limiting",
               "How we price images", "The quiet web", "Designing for slow networks",
               "Maps without JavaScript", "What the logs told us")
_VERSION = 2  # bump when the recipe changes, so old caches are rebuilt


def build(tiny: bool = False) -> list[Path]:
    """Return the corpus's files, building them if the cache is missing or stale."""
    photos, titles = (PHOTOS[:1], CARD_TITLES[:1]) if tiny else (PHOTOS, CARD_TITLES)
    sizes = ((256, 256), (384, 256)) if tiny else SIZES
    recipe = {"version": _VERSION, "photos": photos, "cards": titles, "sizes": sizes}
    digest = hashlib.sha256(json.dumps(recipe).encode()).hexdigest()[:12]
    folder = CACHE / digest
    manifest = folder / "manifest.json"
    if manifest.is_file():
        return [folder / name for name in json.loads(manifest.read_text())]
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for width, height in sizes:
        for name in photos:
            names.append(_write(folder, f"photo-{name}-{width}x{height}.png", _photo(name, width, height)))
        for number, title in enumerate(titles):
            names.append(_write(folder, f"card-{number:02d}-{width}x{height}.png", _card(title, width, height)))
    # A small image each side encodes once before timing, so loading libraries is not timed.
    (folder / "warmup.png").write_bytes(_card("warm-up", 64, 64))
    manifest.write_text(json.dumps(names, indent=1) + "\n")
    return [folder / name for name in names]


def subset(files: list[Path], every: int, name: str, count: int | None = None) -> Path:
    """A folder holding every ``every``-th file of the corpus, at most ``count`` of them (links, not
    copies), and the warm-up image."""
    folder = files[0].parent / name
    shutil.rmtree(folder, ignore_errors=True)  # links from another choice must not linger
    folder.mkdir()
    chosen = files[::every][:count]
    for path in [*chosen, files[0].parent / "warmup.png"]:
        (folder / path.name).symlink_to(path)
    (folder / "manifest.json").write_text(json.dumps([path.name for path in chosen], indent=1) + "\n")
    return folder


def _photo(name: str, width: int, height: int) -> bytes:
    from skimage import data

    pixels = getattr(data, name)()
    if isinstance(pixels, tuple):
        pixels = pixels[0]  # stereo_motorcycle: (left, right, disparity)
    image = pyvips.Image.new_from_array(pixels)
    image = image.copy(interpretation="b-w" if image.bands == 1 else "srgb")
    if image.bands == 1:
        image = image.colourspace("srgb")  # the deliverables are colour, whatever came in
    # Scale so the image covers the box, then crop the middle: what a provider's size would give.
    scale = max(width / image.width, height / image.height)
    image = image.resize(scale, kernel="lanczos3")
    left, top = (image.width - width) // 2, (image.height - height) // 2
    return image.crop(left, top, width, height).cast("uchar").pngsave_buffer(compression=1)


def _card(title: str, width: int, height: int) -> bytes:
    from blogimg.domain import ImageRequest, PromptKind, Size
    from blogimg.providers.card import render_card

    kind = PromptKind.COVER if width == height else PromptKind.INLINE
    return render_card(ImageRequest(prompt=title, size=Size(width, height), kind=kind, title=title))


def _write(folder: Path, name: str, data: bytes) -> str:
    (folder / name).write_bytes(data)
    return name
