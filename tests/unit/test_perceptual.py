"""SSIMULACRA2 in numpy agrees with the reference Python port on real distortions.

The reference reads files; it is given lossless PNGs of exactly the pixels libvips decoded, so
both sides score the same pixels (Pillow and libheif decode AVIF a little differently).
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from functools import cache

import numpy as np
import pytest
import pyvips
from skimage import data
from ssimulacra2 import compute_ssimulacra2

from blogimg.imaging.perceptual import ssimulacra2

TOLERANCE = 0.01  # measured: within 0.0012 on these cases (float32 here, float64 in the port)
ALPHA_TOLERANCE = 0.5  # the port is fed 8-bit PNGs of the blends, so rounding adds a little


@cache
def source(name: str) -> pyvips.Image:
    """Small images from scikit-image: photographs, a grey one, and odd or tiny sizes."""
    if name == "astronaut":
        return _image(data.astronaut()).resize(0.75)  # 384x384
    if name == "coffee-odd":
        return _image(data.coffee()).crop(120, 60, 333, 257)
    if name == "chelsea":
        return _image(data.chelsea()).crop(40, 20, 400, 260)
    if name == "camera-grey":
        return _image(data.camera()).resize(0.5)  # 256x256, one band
    if name == "tiny":  # four scales only: the reference's weight indexing shifts
        return _image(data.astronaut()).resize(0.25).crop(10, 20, 100, 90)
    raise KeyError(name)


def _image(array: np.ndarray) -> pyvips.Image:
    image = pyvips.Image.new_from_array(np.ascontiguousarray(array))
    interpretation = "b-w" if image.bands == 1 else "srgb"
    return image.copy(interpretation=interpretation).cast("uchar").copy_memory()


def distort(image: pyvips.Image, kind: str, quality: int) -> pyvips.Image:
    if kind == "jpeg":
        encoded = image.jpegsave_buffer(Q=quality)
    elif kind == "webp":
        encoded = image.webpsave_buffer(Q=quality)
    elif kind == "avif":
        encoded = image.heifsave_buffer(Q=quality, compression="av1", effort=0)
    elif kind == "blur":
        return image.gaussblur(quality / 10).cast("uchar").copy_memory()
    else:
        raise KeyError(kind)
    decoded = pyvips.Image.new_from_buffer(encoded, "")
    if decoded.bands != image.bands:  # AVIF and WebP decode grey as RGB
        decoded = decoded.colourspace("b-w") if image.bands == 1 else decoded.colourspace("srgb")
    return decoded.cast("uchar").copy_memory()


def _png(image: pyvips.Image) -> io.BytesIO:
    return io.BytesIO(image.pngsave_buffer(compression=1))


def reference_score(reference: pyvips.Image, distorted: pyvips.Image) -> float:
    return float(compute_ssimulacra2(_png(reference), _png(distorted)))


CASES = [
    ("astronaut", "jpeg", 15), ("astronaut", "jpeg", 50), ("astronaut", "jpeg", 92),
    ("astronaut", "webp", 30), ("coffee-odd", "webp", 75), ("chelsea", "webp", 95),
    ("coffee-odd", "avif", 25), ("chelsea", "avif", 55), ("astronaut", "avif", 85),
    ("chelsea", "blur", 12), ("coffee-odd", "jpeg", 40),
    ("camera-grey", "jpeg", 35), ("camera-grey", "webp", 80),
    ("tiny", "jpeg", 30), ("tiny", "blur", 8),
]


@pytest.mark.parametrize(("name", "kind", "quality"), CASES)
def test_agrees_with_the_reference_port(name: str, kind: str, quality: int) -> None:
    original = source(name)
    distorted = distort(original, kind, quality)
    ours = ssimulacra2(original, distorted)
    expected = reference_score(original, distorted)
    assert abs(ours - expected) <= TOLERANCE, (ours, expected)


def _blend(image: np.ndarray, background: float) -> pyvips.Image:
    """libjxl's alpha blend, in gamma-encoded sRGB, rounded to 8 bits for the PNG the port reads."""
    colour = image[..., :3].astype(np.float64) / 255.0
    alpha = image[..., 3:].astype(np.float64) / 255.0
    blended = colour * alpha + (1.0 - alpha) * background
    return _image(np.rint(blended * 255.0).astype(np.uint8))


def test_alpha_is_blended_on_dark_and_light_grey_and_the_worse_score_kept() -> None:
    original = source("chelsea")
    # Opaque at the left, fading to clear at the right: the background shows through.
    ramp = pyvips.Image.xyz(original.width, original.height)[0] * (255.0 / (original.width - 1))
    with_alpha = original.bandjoin((255 - ramp).cast("uchar")).copy_memory()
    distorted = pyvips.Image.new_from_buffer(with_alpha.webpsave_buffer(Q=40), "").copy_memory()
    assert distorted.bands == 4

    ours = ssimulacra2(with_alpha, distorted)
    pixels = (with_alpha.numpy(), distorted.numpy())
    expected = min(reference_score(_blend(pixels[0], background), _blend(pixels[1], background))
                   for background in (0.1, 0.9))
    assert abs(ours - expected) <= ALPHA_TOLERANCE, (ours, expected)
    # The alpha matters: on its own, the colour scores differently.
    assert abs(ssimulacra2(with_alpha[0:3], distorted[0:3]) - ours) > 0.5


def test_identical_images_score_100() -> None:
    for name in ("coffee-odd", "camera-grey", "tiny"):
        assert ssimulacra2(source(name), source(name).copy_memory()) >= 99.99


def test_score_falls_as_jpeg_quality_falls() -> None:
    original = source("coffee-odd")
    scores = [ssimulacra2(original, distort(original, "jpeg", quality)) for quality in (95, 75, 45, 15)]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] - scores[-1] > 30


def test_rejects_images_of_different_sizes() -> None:
    original = source("coffee-odd")
    with pytest.raises(ValueError, match="one size"):
        ssimulacra2(original, original.crop(0, 0, original.width - 1, original.height))


def test_rejects_images_that_are_not_8_bit() -> None:
    original = source("coffee-odd")
    with pytest.raises(ValueError, match="8-bit"):
        ssimulacra2(original.cast("ushort"), original.cast("ushort"))


def test_scores_made_side_by_side_on_threads_equal_those_made_one_by_one() -> None:
    """The encoder pool scores trials of several formats at once: the metric keeps no shared state."""
    pairs = [(source(name), distort(source(name), kind, quality)) for name, kind, quality in CASES[:8]]
    alone = [ssimulacra2(original, distorted) for original, distorted in pairs]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda pair: ssimulacra2(*pair), pairs * 3))
    assert together == alone * 3


def test_grey_with_alpha_scores_as_the_same_pixels_in_rgb_with_alpha() -> None:
    grey = source("camera-grey")
    ramp = (pyvips.Image.xyz(grey.width, grey.height)[0] * (255.0 / (grey.width - 1))).cast("uchar")
    opacity = (255 - ramp).cast("uchar")
    grey_alpha = grey.bandjoin(opacity).copy(interpretation="b-w").copy_memory()
    distorted = distort(grey, "jpeg", 30).bandjoin(opacity).copy(interpretation="b-w").copy_memory()
    assert (grey_alpha.bands, distorted.bands) == (2, 2)

    def as_rgb(image: pyvips.Image) -> pyvips.Image:
        return image[0].bandjoin([image[0], image[0], image[1]]).copy(interpretation="srgb").copy_memory()

    ours = ssimulacra2(grey_alpha, distorted)
    assert ours == ssimulacra2(as_rgb(grey_alpha), as_rgb(distorted))
    assert ours < 95  # the distortion shows through


def test_an_image_under_8_pixels_on_a_side_has_no_scale_and_scores_100() -> None:
    original = source("coffee-odd").crop(0, 0, 7, 40).copy_memory()
    assert ssimulacra2(original, original.gaussblur(3).cast("uchar").copy_memory()) == 100.0
