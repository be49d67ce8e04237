"""The imaging benchmark's fixed corpus, in three categories named by each file's prefix:

- ``photo-``: photographs shipped inside scikit-image. Ten are scaled and centre-cropped to the
  two sizes blogimg asks providers for (most are 300–1000 px, so they are scaled *up* and come out
  smoother than an AI image); six more keep their native pixels 1:1 — mosaics of the 512×512
  photographs and textures, and crops of the 1411×1411 retina, the largest image the wheel ships —
  so their detail is as fine as a generated image's.
- ``art-``: synthetic pictures that are not `card` output: paragraphs of small text (dark on light
  and light on dark), large gradients with subtle hues (they band), a fine synthetic texture and a
  flat diagram.
- ``card-``: blogimg's own `card` provider output.

Every file is a lossless PNG, as providers deliver, so every side starts from the same bytes and
the quality metric has a faithful reference. The corpus is rebuilt deterministically into a cache
folder (ignored by git) and reused while its recipe is unchanged. ``manifest.json`` stays a plain
list of names (bench/sharp/run.mjs reads it); ``category`` reads a name's category from its prefix.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pyvips

from bench.common import ROOT

CACHE = ROOT / "bench" / ".corpus"
CATEGORIES = ("photo", "art", "card")
SIZES = ((1024, 1024), (1536, 1024))
# Colour and grey photographs of different kinds: faces, fur, food, texture, space, micrographs,
# a machine, print. They are 300–1400 px, so most are scaled up, as a 1024-px source would be.
PHOTOS = ("astronaut", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry",
          "stereo_motorcycle", "retina", "rocket", "camera", "brick")
CARD_TITLES = ("Ten lessons from a year of running Postgres", "Why our builds got faster",
               "A field guide to moths of the Alps", "Sourdough at altitude", "Notes on rate limiting",
               "How we price images", "The quiet web", "Designing for slow networks",
               "Maps without JavaScript", "What the logs told us")
TILE = 512
# Mosaics of 512×512 tiles at their native pixels, rows top to bottom. Every name is an image the
# scikit-image wheel ships (no download): a photograph, a texture, a micrograph, or a crop of the
# Hubble deep field ("hubble_deep_field@X,Y") or of the retina ("retina@X,Y") at that offset.
MOSAICS = {
    "photo-mosaic-portraits-1536x1024": (("astronaut", "immunohistochemistry", "brick"),
                                          ("camera", "grass", "gravel")),
    "photo-mosaic-space-1536x1024": (("hubble_deep_field@0,0", "retina@450,450", "moon"),
                                     ("immunohistochemistry", "gravel", "hubble_deep_field@488,360")),
    "photo-mosaic-mixed-1024x1024": (("astronaut", "gravel"), ("immunohistochemistry", "camera")),
    "photo-mosaic-textures-1024x1024": (("grass", "hubble_deep_field@300,200"), ("retina@300,400", "brick")),
}
GRADIENTS = {  # name: (shape, the colour at the start or centre, the colour at the end or edge)
    "art-gradient-dusk-1536x1024": ("linear", (22, 30, 48), (44, 56, 92)),
    "art-gradient-sand-1024x1024": ("radial", (242, 232, 218), (206, 182, 160)),
    "art-gradient-sky-1024x1024": ("linear", (104, 150, 206), (196, 216, 238)),
    "art-gradient-ember-1536x1024": ("radial", (70, 30, 40), (24, 14, 22)),
}
TEXTS = {  # name: (ink, paper)
    "art-text-dark-1536x1024": ((28, 28, 32), (250, 248, 242)),
    "art-text-light-1536x1024": ((226, 232, 240), (24, 30, 40)),
    "art-text-dark-1024x1024": ((40, 36, 30), (238, 236, 228)),
    "art-text-light-1024x1024": ((240, 240, 230), (46, 58, 74)),
}
PROSE = (
    "Page weight is what a blog's readers feel. Every image on a page is fetched, decoded and "
    "painted before the reader sees the words beside it, and on a slow network the bytes are the "
    "wait. A fixed quality setting spends the same effort on a flat illustration as on a "
    "photograph full of leaves; one of them needs far fewer bits than the other to look the same. "
    "Small type is the hardest case: thin strokes, sharp edges and coloured fringes around every "
    "letter, where ringing and blocking show first. Gradients come second, where a few grey levels "
    "spread over hundreds of pixels and any rounding turns into visible steps."
)
STAGES = ("the prompt", "the provider", "the master", "the variants", "the CDN", "the reader")
_VERSION = 3  # bump when the recipe changes, so old caches are rebuilt


def category(name: str) -> str:
    """The category of a corpus file: its name's prefix (photo, art or card)."""
    prefix = Path(name).name.split("-", 1)[0]
    if prefix not in CATEGORIES:
        raise ValueError(f"{name}: not a corpus file name")
    return prefix


def recipes(tiny: bool = False) -> dict[str, Callable[[], bytes]]:
    """Every file of the corpus by name, with the function that draws it."""
    if tiny:  # one of each category (the first three), small, so the test suite's run stays quick
        return {"photo-mosaic-gravel-384x256.png": partial(_mosaic, ((("gravel@0,0", 384, 256),),)),
                "art-text-dark-384x256.png": partial(_text, (28, 28, 32), (250, 248, 242), 384, 256),
                "card-00-384x256.png": partial(_card, CARD_TITLES[0], 384, 256),
                "photo-astronaut-256x256.png": partial(_photo, "astronaut", 256, 256)}
    drawn: dict[str, Callable[[], bytes]] = {}
    for width, height in SIZES:
        for name in PHOTOS:
            drawn[f"photo-{name}-{width}x{height}.png"] = partial(_photo, name, width, height)
        for number, title in enumerate(CARD_TITLES):
            drawn[f"card-{number:02d}-{width}x{height}.png"] = partial(_card, title, width, height)
    for name, rows in MOSAICS.items():
        drawn[f"{name}.png"] = partial(_mosaic, tuple(tuple((t, TILE, TILE) for t in row) for row in rows))
    drawn["photo-retina-native-1024x1024.png"] = partial(_retina, 1024, 1024)
    drawn["photo-retina-native-1536x1024.png"] = partial(_retina, 1536, 1024)
    for name, (ink, paper) in TEXTS.items():
        drawn[f"{name}.png"] = partial(_text, ink, paper, *_size(name))
    for name, (shape, start, end) in GRADIENTS.items():
        drawn[f"{name}.png"] = partial(_gradient, shape, start, end, *_size(name))
    drawn["art-texture-grain-1536x1024.png"] = partial(_texture, 1536, 1024)
    drawn["art-diagram-boxes-1536x1024.png"] = partial(_diagram, 1536, 1024)
    return drawn


def build(tiny: bool = False) -> list[Path]:
    """Return the corpus's files, building them if the cache is missing or stale."""
    drawn = recipes(tiny)
    recipe = {"version": _VERSION, "names": list(drawn), "mosaics": MOSAICS, "gradients": GRADIENTS,
              "texts": TEXTS, "prose": PROSE, "stages": STAGES}
    digest = hashlib.sha256(json.dumps(recipe).encode()).hexdigest()[:12]
    folder = CACHE / digest
    manifest = folder / "manifest.json"
    if manifest.is_file():
        return [folder / name for name in json.loads(manifest.read_text())]
    folder.mkdir(parents=True, exist_ok=True)
    for name, draw in drawn.items():
        (folder / name).write_bytes(draw())
    # A small image each side encodes once before timing, so loading libraries is not timed.
    (folder / "warmup.png").write_bytes(_card("warm-up", 64, 64))
    manifest.write_text(json.dumps(list(drawn), indent=1) + "\n")
    return [folder / name for name in drawn]


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


def _size(name: str) -> tuple[int, int]:
    width, height = name.rsplit("-", 1)[1].split("x")
    return int(width), int(height)


def _srgb(pixels) -> pyvips.Image:
    if isinstance(pixels, tuple):
        pixels = pixels[0]  # stereo_motorcycle: (left, right, disparity)
    image = pyvips.Image.new_from_array(pixels)
    image = image.copy(interpretation="b-w" if image.bands == 1 else "srgb")
    # The deliverables are colour, whatever came in.
    return image.colourspace("srgb") if image.bands == 1 else image


def _photo(name: str, width: int, height: int) -> bytes:
    from skimage import data

    image = _srgb(getattr(data, name)())
    # Scale so the image covers the box, then crop the middle: what a provider's size would give.
    scale = max(width / image.width, height / image.height)
    image = image.resize(scale, kernel="lanczos3")
    left, top = (image.width - width) // 2, (image.height - height) // 2
    return image.crop(left, top, width, height).cast("uchar").pngsave_buffer(compression=1)


def _tile(spec: str, width: int, height: int) -> pyvips.Image:
    """One tile at native resolution: a whole shipped image, or a crop of one at ``name@x,y``."""
    from skimage import data

    name, _, offset = spec.partition("@")
    image = _srgb(getattr(data, name)())
    left, top = (int(v) for v in offset.split(",")) if offset else (0, 0)
    return image.crop(left, top, width, height)


def _mosaic(rows: tuple[tuple[tuple[str, int, int], ...], ...]) -> bytes:
    tiles = [_tile(spec, width, height) for row in rows for spec, width, height in row]
    # Placed 1:1, never scaled: the detail is the camera's own.
    image = pyvips.Image.arrayjoin(tiles, across=len(rows[0]))
    return image.cast("uchar").pngsave_buffer(compression=1)


def _retina(width: int, height: int) -> bytes:
    from skimage import data

    image = _srgb(data.retina())
    if width <= image.width:  # 1024×1024: the middle at 1:1
        left, top = (image.width - width) // 2, (image.height - height) // 2
        return image.crop(left, top, width, height).pngsave_buffer(compression=1)
    # 1536 is wider than the 1411 px shipped: the middle 1411×941 scaled by 1.09 only, the least any
    # 1536-wide crop of it can be; nothing is scaled down, so no detail is averaged away.
    crop_height = round(image.width * height / width)
    image = image.crop(0, (image.height - crop_height) // 2, image.width, crop_height)
    image = image.resize(width / image.width, vscale=height / crop_height, kernel="lanczos3")
    return image.cast("uchar").pngsave_buffer(compression=1)


def _font() -> str:
    import font_source_sans_pro

    return str(Path(font_source_sans_pro.font_directory) / "SourceSansPro-Regular.ttf")


def _text(ink: tuple[int, ...], paper: tuple[int, ...], width: int, height: int) -> bytes:
    """Columns of paragraphs at 7–13 px type: body text, captions and footnotes."""
    margin, gutter = 16, 20
    columns = max(1, (width - 2 * margin + gutter) // (320 + gutter))
    column_width = (width - 2 * margin - gutter * (columns - 1)) // columns
    coverage = pyvips.Image.black(width, height)
    sizes = (13, 9, 11, 7, 10, 8, 12)
    for column in range(columns):
        top, index = margin, column
        while top < height - margin:
            size = sizes[index % len(sizes)]
            mask = pyvips.Image.text(PROSE, font=f"Source Sans Pro {size}px", fontfile=_font(),
                                     width=column_width, justify=index % 2 == 0, dpi=72)
            left = margin + column * (column_width + gutter)
            room = height - margin - top
            mask = mask.crop(0, 0, mask.width, min(mask.height, room))
            coverage = coverage.insert(mask, left, top)
            top += mask.height + size
            index += 1
    alpha = coverage.cast("float") / 255
    image = pyvips.Image.black(width, height).new_from_image(list(paper)) * (1 - alpha) + alpha * list(ink)
    return _colour(image)


def _gradient(shape: str, start: tuple[int, ...], end: tuple[int, ...], width: int, height: int) -> bytes:
    """A smooth ramp a few dozen levels deep over the whole image, rounded to 8 bits: it bands."""
    xy = pyvips.Image.xyz(width, height)
    if shape == "linear":  # top left to bottom right
        t = (xy[0] * width + xy[1] * height) / (width * width + height * height)
    else:  # from the middle outward
        middle = xy - [width / 2, height / 2]
        t = (middle[0] ** 2 + middle[1] ** 2) ** 0.5 / ((width * width + height * height) ** 0.5 / 2)
    image = t * [b - a for a, b in zip(start, end, strict=True)] + list(start)
    return _colour(image)


def _texture(width: int, height: int) -> bytes:
    """Fine synthetic detail everywhere: Perlin noise at three scales, Worley cells and grain."""
    fine = pyvips.Image.perlin(width, height, cell_size=4, seed=1)
    medium = pyvips.Image.perlin(width, height, cell_size=16, seed=2)
    cells = pyvips.Image.worley(width, height, cell_size=48, seed=3) / 48
    grain = pyvips.Image.gaussnoise(width, height, sigma=10, mean=0, seed=4)
    light = 128 + 60 * fine + 50 * medium - 40 * cells
    image = light.bandjoin([light * 0.8 + 30 * medium + 20, light * 0.6 + 70 * cells]) + grain
    return _colour(image)


def _diagram(width: int, height: int) -> bytes:
    """A flat chart: filled boxes, connecting lines and labels, as a blog's illustration has."""
    image = pyvips.Image.black(width, height).new_from_image([255, 255, 255]).copy_memory()
    fills = ([66, 133, 244], [219, 68, 55], [244, 180, 0], [15, 157, 88], [171, 71, 188], [0, 172, 193])
    boxes = [(96 + 460 * (i % 3), 140 + 420 * (i // 3), 360, 220) for i in range(6)]
    for i, (left, top, box_width, box_height) in enumerate(boxes):
        if i % 3 < 2:  # arrows to the right-hand neighbour
            image = image.draw_line([60, 60, 60], left + box_width, top + box_height // 2,
                                    left + 460, top + box_height // 2)
        image = image.draw_rect(fills[i], left, top, box_width, box_height, fill=True)
        image = image.draw_rect([30, 30, 30], left, top, box_width, box_height)
        label = pyvips.Image.text(f"Stage {i + 1}: {STAGES[i]}", font="Source Sans Pro 20px",
                                  fontfile=_font(), width=box_width - 32, dpi=72)
        image = image.draw_mask([255, 255, 255], label, left + 16, top + 16)
    title = pyvips.Image.text("How an image reaches a reader", font="Source Sans Pro Bold 40px",
                              fontfile=_font(), dpi=72)
    return _colour(image.draw_mask([30, 30, 30], title, 96, 48))


def _colour(image: pyvips.Image) -> bytes:
    # Round, not truncate, so the ramps land on their nearest 8-bit level.
    rounded = (image + 0.5).cast("uchar") if image.format != "uchar" else image
    return rounded.copy(interpretation="srgb").pngsave_buffer(compression=1)


def _card(title: str, width: int, height: int) -> bytes:
    from blogimg.domain import ImageRequest, PromptKind, Size
    from blogimg.providers.card import render_card

    kind = PromptKind.COVER if width == height else PromptKind.INLINE
    return render_card(ImageRequest(prompt=title, size=Size(width, height), kind=kind, title=title))
