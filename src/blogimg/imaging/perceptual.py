"""SSIMULACRA2, the perceptual distance the quality search aims at, in libvips operations only.

SSIMULACRA2 (Jon Sneyers, Cloudinary; part of libjxl, BSD-3-Clause licence) compares a
distorted image with its reference in the XYB colour space at six scales, with an SSIM map and
two edge maps ("artifacts" and "detail lost") per channel, and maps 108 weighted means onto a
0–100 score (100: identical; 90: visually lossless; 70: high quality; 50: medium).
The weights and the final mapping constants below are libjxl's (tools/ssimulacra2.cc), as the
reference Python port ``ssimulacra2`` (a dev dependency, used by the tests and the benchmark)
carries them. This module follows that port step by step: the same sRGB transfer curve, the
same 11-tap Gaussian (sigma 1.5) and the same borders (the port's XYB planes are transposed, so
its zero padding falls on the left and right columns and its mirroring at the top and bottom),
the 2x2 box downsample in linear RGB with partial blocks at odd edges, and its weight indexing,
which shifts when an image is too small for six scales.

numpy and scipy are not dependencies of blogimg, so everything is a libvips pipeline. The speed
comes from computing only what carries weight: 63 of the 108 weights are zero and 38 more are
below 0.0021, together moving a score by at most about 0.002 on the benchmark corpus, while the
rest are 0.28 or more. Left out, the full-resolution scale (three quarters of all the work) needs
only the Y channel's SSIM and detail-lost maps, and the coarsest scale nothing at all. Cube roots
are exp(log(x) / 3), cheaper in libvips than pow; the four blurred quantities per channel (both
means, the sum of both second moments and the cross moment: the SSIM map only ever uses
sigma11 + sigma22) go through one separable convolution.

Images with alpha are blended onto 0.1 and 0.9 grey, in gamma-encoded sRGB as libjxl does, and
the lower score is returned. (The Python port's compute_ssimulacra2_with_alpha means to do the
same, but opens the files with Pillow's ``convert("RGB")``, which drops the alpha first.)
"""

from __future__ import annotations

import functools
import math
from array import array
from dataclasses import dataclass

import pyvips

__all__ = ["ssimulacra2"]

# libjxl's opsin absorbance matrix and bias (lib/jxl/cms/opsin_params.h).
_OPSIN = ((0.30, 1.0 - 0.078 - 0.30, 0.078),
          (0.23, 1.0 - 0.078 - 0.23, 0.078),
          (0.24342268924547819, 0.20476744424496821, 1.0 - 0.24342268924547819 - 0.20476744424496821))
_OPSIN_BIAS = 0.0037930732552754493
_CBRT_BIAS = _OPSIN_BIAS ** (1.0 / 3.0)
_C2 = 0.0009
_NUM_SCALES = 6
_BLUR_SIGMA = 1.5
_BLUR_RADIUS = round(3.2795 * _BLUR_SIGMA + 0.2546)  # the zero rows above and below: 5
# Below this a weight is left out; all such weights are 0.0021 or less, the next smallest 0.285.
_NEGLIGIBLE_WEIGHT = 0.01

# libjxl tools/ssimulacra2.cc (BSD-3-Clause), in the Python port's order: for each channel
# (X, Y, B), each scale, each norm (mean, 4-norm): SSIM, artifact, detail lost.
_WEIGHTS = (
    0.0, 0.0007376606707406586, 0.0, 0.0, 0.0007793481682867309, 0.0,
    0.0, 0.0004371155730107379, 0.0, 1.1041726426657346, 0.00066284834129271, 0.00015231632783718752,
    0.0, 0.0016406437456599754, 0.0, 1.8422455520539298, 11.441172603757666, 0.0,
    0.0007989109436015163, 0.000176816438078653, 0.0, 1.8787594979546387, 10.94906990605142, 0.0,
    0.0007289346991508072, 0.9677937080626833, 0.0, 0.00014003424285435884, 0.9981766977854967, 0.00031949755934435053,
    0.0004550992113792063, 0.0, 0.0, 0.0013648766163243398, 0.0, 0.0,
    0.0, 0.0, 0.0, 7.466890328078848, 0.0, 17.445833984131262,
    0.0006235601634041466, 0.0, 0.0, 6.683678146179332, 0.00037724407979611296, 1.027889937768264,
    225.20515300849274, 0.0, 0.0, 19.213238186143016, 0.0011401524586618361, 0.001237755635509985,
    176.39317598450694, 0.0, 0.0, 24.43300999870476, 0.28520802612117757, 0.0004485436923833408,
    0.0, 0.0, 0.0, 34.77906344483772, 44.835625328877896, 0.0,
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
    0.0, 0.0008680556573291698, 0.0, 0.0, 0.0, 0.0,
    0.0, 0.0005313191874358747, 0.0, 0.00016533814161379112, 0.0, 0.0,
    0.0, 0.0, 0.0, 0.0004179171803251336, 0.0017290828234722833, 0.0,
    0.0020827005846636437, 0.0, 0.0, 8.826982764996862, 23.19243343998926, 0.0,
    95.1080498811086, 0.9863978034400682, 0.9834382792465353, 0.0012286405048278493, 171.2667255897307, 0.9807858872435379,
    0.0, 0.0, 0.0, 0.0005130064588990679, 0.0, 0.00010854057858411537,
)
# libjxl's mapping of the weighted sum onto the score.
_SUM_SCALE = 0.9562382616834844
_POLYNOMIAL = (2.326765642916932, -0.020884521182843837, 6.248496625763138e-05)
_EXPONENT = 0.6276336467831387

_SSIM, _ARTIFACT, _DETAIL_LOST = 0, 1, 2
_FEATURES_PER_SCALE = 6  # 3 maps x 2 norms
_HUGE = 1e30  # clamp's upper bound, where only the lower one (max(x, 0)) is meant


def _srgb_to_linear(value: float) -> float:
    """The Python port's transfer curve (the sRGB standard's), for values in 0..1."""
    return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4


def _float_image(values: list[float], width: int) -> pyvips.Image:
    return pyvips.Image.new_from_memory(array("f", values).tobytes(), width, 1, 1, "float")


@functools.cache
def _linear_lut() -> pyvips.Image:
    return _float_image([_srgb_to_linear(value / 255.0) for value in range(256)], 256)


@functools.cache
def _blur_mask() -> pyvips.Image:
    # scipy.ndimage.gaussian_filter(sigma=1.5, truncate=3.33), as the port blurs: 11 taps.
    radius = int(3.33 * _BLUR_SIGMA + 0.5)
    taps = [math.exp(-0.5 * (x / _BLUR_SIGMA) ** 2) for x in range(-radius, radius + 1)]
    total = sum(taps)
    return _float_image([tap / total for tap in taps], len(taps))


@dataclass(frozen=True)
class _ScalePlan:
    """What one scale must compute: its channels (0 X, 1 Y, 2 B) and (feature, channel, weight)."""

    channels: tuple[int, ...]
    features: tuple[tuple[int, int, float], ...]


def _scale_count(width: int, height: int) -> int:
    count = 0
    while count < _NUM_SCALES and width >= 8 and height >= 8:
        count += 1
        width, height = (width + 1) // 2, (height + 1) // 2
    return count


@functools.cache
def _plans(scale_count: int) -> tuple[_ScalePlan, ...]:
    """Per scale, the features with a weight that matters, indexed as the port indexes them.

    A feature is ``norm * 3 + map``: SSIM, artifact or detail lost, as a mean (norm 0) or a
    4-norm (norm 1). The port walks the weights channel by channel over the scales it computed,
    so an image with fewer than six scales uses a shifted stretch of them; this does the same.
    """
    plans = []
    for scale in range(scale_count):
        features = []
        for channel in range(3):
            for feature in range(_FEATURES_PER_SCALE):
                weight = _WEIGHTS[(channel * scale_count + scale) * _FEATURES_PER_SCALE + feature]
                if weight >= _NEGLIGIBLE_WEIGHT:
                    features.append((feature, channel, weight))
        channels = tuple(sorted({channel for _, channel, _ in features}))
        plans.append(_ScalePlan(channels, tuple(features)))
    return tuple(plans)


@functools.cache
def _matrix(rows: tuple[tuple[float, ...], ...]) -> pyvips.Image:
    """A recomb matrix, made once: building one from a list costs as much as a small scale's op."""
    return pyvips.Image.new_from_list([list(row) for row in rows]).copy_memory()


def _rows(width: int, entries: list[list[tuple[int, float]]]) -> pyvips.Image:
    """A recomb matrix from sparse rows of (input band, coefficient)."""
    matrix = []
    for row in entries:
        dense = [0.0] * width
        for band, coefficient in row:
            dense[band] += coefficient
        matrix.append(tuple(dense))
    return _matrix(tuple(matrix))


# X, Y and B as combinations of the cube roots c0, c1, c2 of the three opsin mixtures, and the
# constants the port adds: X = (c0 - c1) / 2 * 14 + 0.42, Y = (c0 + c1) / 2 - cbrt(bias) + 0.01
# and B = c2 - cbrt(bias) - Y + 0.55 (the bias's cube root cancels in X and in B).
_FROM_ROOTS = ({0: 7.0, 1: -7.0}, {0: 0.5, 1: 0.5}, {0: -0.5, 1: -0.5, 2: 1.0})
_XYB_OFFSETS = (0.42, 0.01 - _CBRT_BIAS, 0.55)


def _sum_and_difference(linear_pair: pyvips.Image, channels: tuple[int, ...]) -> pyvips.Image:
    """a + b, then a - b, per channel: a and b the port's positive XYB of the two images.

    Both images travel as one 6-band image, so each step is one libvips operation for the two.
    Sum and difference carry everything the maps need (see _ssim_map and _edge_ratio) and make
    the SSIM terms variances of a sum and of a difference, which lose less to float cancellation
    than s11 - mu1^2 does. Mixtures of non-negative light plus the bias are positive, so the
    port's max(0) before the cube root never acts and is left out.
    """
    mixtures = 3 if 2 in channels else 2
    mix = _rows(6, [[(3 * image + colour, _OPSIN[row][colour]) for colour in range(3)]
                    for image in range(2) for row in range(mixtures)])
    roots = ((linear_pair.recomb(mix) + _OPSIN_BIAS).log() * (1.0 / 3.0)).exp()
    combine = _rows(2 * mixtures, [[(root + mixtures * image, coefficient * sign)
                                    for image, sign in ((0, 1.0), (1, signs))
                                    for root, coefficient in _FROM_ROOTS[channel].items()]
                                   for signs in (1.0, -1.0) for channel in channels])
    offsets = [2.0 * _XYB_OFFSETS[channel] for channel in channels] + [0.0] * len(channels)
    return roots.recomb(combine).linear([1.0] * len(offsets), offsets)


def _blur(image: pyvips.Image) -> pyvips.Image:
    """The port's blur: mirrored rows above and below, zero columns at the sides.

    The port pads "rows" with zeros and reflects "columns", but its planes are transposed
    (``linear.T`` in its linear_rgb_to_xyb), so in image terms the zeros are at the sides.
    """
    width, height = image.width, image.height
    radius = _BLUR_RADIUS
    padded = image.embed(0, radius, width, height + 2 * radius, extend="mirror")
    padded = padded.embed(radius, 0, width + 2 * radius, height + 2 * radius, extend="black")
    return padded.convsep(_blur_mask(), precision="float").crop(radius, radius, width, height)


def _clamp_positive(image: pyvips.Image) -> pyvips.Image:
    return image.clamp(min=0.0, max=_HUGE)


def _ssim_map(blurred: pyvips.Image, count: int) -> pyvips.Image:
    """max(0, 1 - (1 - (mu1 - mu2)^2) * (2 (s12 - mu1 mu2) + C2) / (s11 + s22 - mu1^2 - mu2^2 + C2)).

    ``blurred`` holds S = mu1 + mu2, M = mu1 - mu2, P = blur((a + b)^2), D = blur((a - b)^2),
    count bands each. The numerator is (VP - VD) / 2 + C2 and the denominator (VP + VD) / 2 + C2
    with VP = P - S^2 and VD = D - M^2.
    """
    k = count
    squares = blurred.extract_band(0, n=2 * k)
    squares = squares * squares
    variances = blurred.extract_band(2 * k, n=2 * k) - squares
    parts = variances.recomb(_rows(2 * k, [[(c, 0.5), (k + c, -0.5)] for c in range(k)]
                                   + [[(c, 0.5), (k + c, 0.5)] for c in range(k)]))
    parts = parts + _C2
    similarity = parts.extract_band(0, n=k) / parts.extract_band(k, n=k)
    return _clamp_positive(1.0 - similarity * (1.0 - squares.extract_band(k, n=k)))


def _edge_ratio(sums: pyvips.Image, blurred: pyvips.Image, count: int) -> pyvips.Image:
    """(1 + |b - mu2|) / (1 + |a - mu1|) - 1, from a + b, a - b and their blurs.

    Over 0, the distorted image has edges the reference lacks (artifacts); under 0, it lost some.
    """
    k = count
    deviations = sums - blurred.extract_band(0, n=2 * k)
    deviations = deviations.recomb(_rows(2 * k, [[(c, 0.5), (k + c, 0.5)] for c in range(k)]
                                         + [[(c, 0.5), (k + c, -0.5)] for c in range(k)]))
    deviations = deviations.abs() + 1.0
    return deviations.extract_band(k, n=k) / deviations.extract_band(0, n=k) - 1.0


def _scale_sum(linear_pair: pyvips.Image, plan: _ScalePlan) -> float:
    """One scale's weighted features, from both images in linear RGB (6 bands)."""
    k = len(plan.channels)
    sums = _sum_and_difference(linear_pair, plan.channels).copy_memory()
    blurred = _blur(sums.bandjoin(sums * sums)).copy_memory()

    needed = {feature % 3 for feature, _, _ in plan.features}
    maps: list[pyvips.Image] = []
    first_band: dict[int, int] = {}
    if _SSIM in needed:
        first_band[_SSIM] = len(maps) * k
        maps.append(_ssim_map(blurred, k))
    if needed & {_ARTIFACT, _DETAIL_LOST}:
        ratio = _edge_ratio(sums, blurred, k)
        for kind, signed in ((_ARTIFACT, ratio), (_DETAIL_LOST, ratio * -1.0)):
            if kind in needed:
                first_band[kind] = len(maps) * k
                maps.append(_clamp_positive(signed))
    features = maps[0].bandjoin(maps[1:]) if len(maps) > 1 else maps[0]
    # A mean comes from a band's sum; a 4-norm from the sum of squares of the squared band.
    both = features.bandjoin(features * features)
    # stats: a row per band after the first (all bands); columns min, max, sum, sum of squares, ...
    stats = array("d")
    stats.frombytes(both.stats().write_to_memory())
    columns = 10
    pixels = float(linear_pair.width * linear_pair.height)
    total = 0.0
    for feature, channel, weight in plan.features:
        band = first_band[feature % 3] + plan.channels.index(channel)
        if feature >= 3:
            total += weight * (stats[(1 + features.bands + band) * columns + 3] / pixels) ** 0.25
        else:
            total += weight * stats[(1 + band) * columns + 2] / pixels
    return total


def _score(linear_pair: pyvips.Image) -> float:
    """SSIMULACRA2 of two images in linear RGB, joined into one 6-band float image."""
    plans = _plans(_scale_count(linear_pair.width, linear_pair.height))
    last = max((scale for scale, plan in enumerate(plans) if plan.features), default=-1)
    total = 0.0
    for scale in range(last + 1):
        if scale:
            linear_pair = linear_pair.shrink(2, 2, ceil=True).copy_memory()
        if plans[scale].features:
            total += _scale_sum(linear_pair, plans[scale])
    total *= _SUM_SCALE
    total = _POLYNOMIAL[0] * total + _POLYNOMIAL[1] * total**2 + _POLYNOMIAL[2] * total**3
    return 100.0 - 10.0 * total**_EXPONENT if total > 0 else 100.0


def _colour_and_alpha(image: pyvips.Image) -> tuple[pyvips.Image, pyvips.Image | None]:
    if image.format != "uchar" or image.bands not in (1, 2, 3, 4):
        raise ValueError(f"SSIMULACRA2 needs 8-bit grey or sRGB, got {image.bands} {image.format} bands")
    colour_bands = 3 if image.bands >= 3 else 1
    colour = image.extract_band(0, n=colour_bands)
    if colour_bands == 1:
        colour = colour.bandjoin([colour, colour])  # as Pillow's convert("RGB") makes grey RGB
    alpha = image[colour_bands] if image.bands in (2, 4) else None
    return colour, alpha


def _blended_linear(colour: pyvips.Image, alpha: pyvips.Image | None, background: float) -> pyvips.Image:
    """Linear RGB of the image over a grey background, blended in gamma-encoded sRGB (libjxl)."""
    if alpha is None:
        return colour.maplut(_linear_lut())
    opacity = alpha.cast("float") * (1.0 / 255.0)
    value = colour.cast("float") * (1.0 / 255.0) * opacity + (1.0 - opacity) * background
    curve = ((value + 0.055) * (1.0 / 1.055)) ** 2.4
    return (value <= 0.04045).ifthenelse(value * (1.0 / 12.92), curve).cast("float")


def ssimulacra2(reference: pyvips.Image, distorted: pyvips.Image) -> float:
    """The SSIMULACRA2 score of ``distorted`` against ``reference``: 100 when identical, lower worse.

    Both must be the same size and 8-bit: sRGB (3 bands), grey (1), either with alpha (4, 2).
    """
    if (reference.width, reference.height) != (distorted.width, distorted.height):
        raise ValueError(f"SSIMULACRA2 compares images of one size, got {reference.width}x{reference.height}"
                         f" and {distorted.width}x{distorted.height}")
    reference_colour, reference_alpha = _colour_and_alpha(reference)
    distorted_colour, distorted_alpha = _colour_and_alpha(distorted)
    backgrounds = (0.5,) if reference_alpha is None and distorted_alpha is None else (0.1, 0.9)
    return min(_score(_blended_linear(reference_colour, reference_alpha, background)
                      .bandjoin(_blended_linear(distorted_colour, distorted_alpha, background)).copy_memory())
               for background in backgrounds)
