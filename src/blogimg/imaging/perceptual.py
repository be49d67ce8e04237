"""SSIMULACRA2, the perceptual distance the quality search aims at, in numpy.

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

The quality search scores every trial encode, so the metric's speed is the search's. It was
first a chain of libvips operations: on one core a 480-px score took ~140 ms, and a 120-px one
still ~55 ms, the cost of building some 220 operations and 20 evaluations whatever the size; the
slope search spent half its CPU time there. numpy's whole-array operations have no such cost and
release the GIL, so trials still score side by side on the encoder pool's threads: a 480-px score
now takes ~18 ms, a 960-px one ~85 ms (was ~290). Everything is float32, one plane (a 2-D array)
at a time: at full size both images in linear RGB and the planes of one channel's maps, rather
than every channel's blurs at once (encoder_memory.scoring_estimate).

The speed also comes from computing only what carries weight: 56 of the 108 weights are zero and
27 more are below 0.0021, together moving a score by at most about 0.002 on the benchmark
corpus, while the other 25 are 0.28 or more. Left out, the full-resolution scale (three quarters
of all the work) needs only the Y channel's SSIM and detail-lost maps, and the coarsest scale
nothing at all. Each channel's SSIM map is formed from the sum and the difference of the two
images' planes, whose blurred squares give the variances of a sum and of a difference: that
loses less to float32 cancellation than s11 - mu1^2 does (agreement with the float64 port:
about 0.001).

Images with alpha are blended onto 0.1 and 0.9 grey, in gamma-encoded sRGB as libjxl does, and
the lower score is returned. (The Python port's compute_ssimulacra2_with_alpha means to do the
same, but opens the files with Pillow's ``convert("RGB")``, which drops the alpha first.)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyvips

__all__ = ["ssimulacra2"]

Plane = npt.NDArray[np.float32]
#: An image in linear RGB: its red, green and blue planes (one plane three times for grey).
Linear = tuple[Plane, Plane, Plane]

# libjxl's opsin absorbance matrix and bias (lib/jxl/cms/opsin_params.h).
_OPSIN = ((0.30, 1.0 - 0.078 - 0.30, 0.078),
          (0.23, 1.0 - 0.078 - 0.23, 0.078),
          (0.24342268924547819, 0.20476744424496821, 1.0 - 0.24342268924547819 - 0.20476744424496821))
_OPSIN_BIAS = 0.0037930732552754493
_CBRT_BIAS = _OPSIN_BIAS ** (1.0 / 3.0)
_C2 = 0.0009
_NUM_SCALES = 6
_BLUR_SIGMA = 1.5
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
# X, Y and B from the cube roots c0, c1, c2 of the three opsin mixtures, with the constants the
# port adds: X = (c0 - c1) / 2 * 14 + 0.42, Y = (c0 + c1) / 2 - cbrt(bias) + 0.01 and
# B = c2 - cbrt(bias) - (Y before its 0.01) + 0.55 (the bias's cube root cancels in X and in B).
_X, _Y, _B = 0, 1, 2


def _srgb_to_linear(value: float) -> float:
    """The Python port's transfer curve (the sRGB standard's), for values in 0..1."""
    return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4


_LINEAR_LUT = np.array([_srgb_to_linear(value / 255.0) for value in range(256)], dtype=np.float32)


@functools.cache
def _taps() -> tuple[float, ...]:
    """scipy.ndimage.gaussian_filter(sigma=1.5, truncate=3.33), as the port blurs: 11 taps."""
    radius = int(3.33 * _BLUR_SIGMA + 0.5)
    taps = [math.exp(-0.5 * (x / _BLUR_SIGMA) ** 2) for x in range(-radius, radius + 1)]
    total = sum(taps)
    return tuple(float(np.float32(tap / total)) for tap in taps)


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


def _cube_roots(image: Linear, channels: tuple[int, ...]) -> list[Plane]:
    """c0, c1 (and c2 when B is needed): cube roots of the opsin mixtures plus bias. Mixtures of
    non-negative light plus the bias are positive, so the port's max(0) never acts."""
    red, green, blue = image
    roots = []
    for row in _OPSIN[:3 if _B in channels else 2]:
        mixture = red * np.float32(row[0])
        mixture += green * np.float32(row[1])
        mixture += blue * np.float32(row[2])
        mixture += np.float32(_OPSIN_BIAS)
        roots.append(np.cbrt(mixture, out=mixture))
    return roots


def _xyb(roots: list[Plane], channel: int) -> Plane:
    """One of the port's positive XYB planes from the cube roots."""
    if channel == _X:
        return (roots[0] - roots[1]) * np.float32(7.0) + np.float32(0.42)
    luma = (roots[0] + roots[1]) * np.float32(0.5)
    if channel == _Y:
        return luma + np.float32(0.01 - _CBRT_BIAS)
    return roots[2] - luma + np.float32(0.55)


def _blur(plane: Plane) -> Plane:
    """The port's blur: mirrored rows above and below, zero columns at the sides.

    The port pads "rows" with zeros and reflects "columns", but its planes are transposed
    (``linear.T`` in its linear_rgb_to_xyb), so in image terms the zeros are at the sides.
    The kernel is symmetric, so each pair of taps costs one add before its multiply.
    """
    taps = _taps()
    radius = len(taps) // 2
    height = plane.shape[0]
    padded = np.pad(plane, ((radius, radius), (0, 0)), mode="symmetric")  # scipy's "reflect"
    vertical = padded[radius:radius + height] * np.float32(taps[radius])
    pair = np.empty_like(vertical)
    for offset in range(radius):
        np.add(padded[offset:offset + height], padded[2 * radius - offset:2 * radius - offset + height], out=pair)
        pair *= np.float32(taps[offset])
        vertical += pair
    del padded, pair
    blurred = vertical * np.float32(taps[radius])
    for shift in range(1, radius + 1):  # beyond the sides is zero, so those products are left out
        weight = np.float32(taps[radius - shift])
        blurred[:, shift:] += vertical[:, :-shift] * weight
        blurred[:, :-shift] += vertical[:, shift:] * weight
    return blurred


def _downsample(plane: Plane) -> Plane:
    """The 2x2 box average; a partial block at an odd edge averages the pixels it has."""
    height, width = plane.shape
    if height % 2 or width % 2:
        plane = np.pad(plane, ((0, height % 2), (0, width % 2)), mode="edge")
    total = plane[0::2, 0::2] + plane[1::2, 0::2]
    total += plane[0::2, 1::2]
    total += plane[1::2, 1::2]
    total *= np.float32(0.25)
    return total


def _downsample_image(image: Linear) -> Linear:
    smaller = {id(plane): _downsample(plane) for plane in image}  # grey: one plane, once
    return (smaller[id(image[0])], smaller[id(image[1])], smaller[id(image[2])])


def _channel_maps(planes: list[Plane], needed: set[int]) -> dict[int, Plane]:
    """The SSIM, artifact and detail-lost maps of one channel that are ``needed``, from its
    planes in the reference and the distorted image (taken from ``planes``, so they are freed
    as soon as their sum and difference are made).

    From S = a + b and M = a - b and their blurs: mu1 - mu2 is blur(M), and with
    VP = blur(S^2) - blur(S)^2 and VD = blur(M^2) - blur(M)^2 the SSIM map is
    max(0, 1 - (1 - blur(M)^2) ((VP - VD) / 2 + C2) / ((VP + VD) / 2 + C2)).
    The edge ratio is (1 + |b - mu2|) / (1 + |a - mu1|) - 1: over 0 the distorted image has
    edges the reference lacks (artifacts), under 0 it lost some.
    """
    second = planes.pop()
    total = planes[-1] + second
    difference = planes.pop() - second
    del second
    total_blurred, difference_blurred = _blur(total), _blur(difference)
    maps: dict[int, Plane] = {}
    if _SSIM in needed:
        spread = _blur(total * total)
        spread -= total_blurred * total_blurred
        lost = _blur(difference * difference)
        difference_squared = difference_blurred * difference_blurred
        lost -= difference_squared
        numerator = (spread - lost) * np.float32(0.5) + np.float32(_C2)
        spread += lost
        del lost
        spread *= np.float32(0.5)
        spread += np.float32(_C2)
        numerator /= spread
        del spread
        numerator *= np.float32(1.0) - difference_squared
        del difference_squared
        np.subtract(np.float32(1.0), numerator, out=numerator)
        maps[_SSIM] = np.maximum(numerator, np.float32(0.0), out=numerator)
    if needed & {_ARTIFACT, _DETAIL_LOST}:
        # a - mu1 = ((S - blur S) + (M - blur M)) / 2, b - mu2 = ((S - blur S) - (M - blur M)) / 2
        total -= total_blurred
        difference -= difference_blurred
        del total_blurred, difference_blurred
        reference_edges = np.abs(total + difference)
        reference_edges *= np.float32(0.5)
        reference_edges += np.float32(1.0)
        total -= difference
        del difference
        distorted_edges = np.abs(total, out=total)
        distorted_edges *= np.float32(0.5)
        distorted_edges += np.float32(1.0)
        distorted_edges /= reference_edges
        del reference_edges
        distorted_edges -= np.float32(1.0)
        if _ARTIFACT in needed:
            maps[_ARTIFACT] = np.maximum(distorted_edges, np.float32(0.0))
        if _DETAIL_LOST in needed:
            maps[_DETAIL_LOST] = np.maximum(-distorted_edges, np.float32(0.0))
    return maps


def _channel_planes(image: Linear, channels: tuple[int, ...]) -> dict[int, Plane]:
    """The XYB planes of ``channels``; the cube roots they are made from are freed on return."""
    roots = _cube_roots(image, channels)
    return {channel: _xyb(roots, channel) for channel in channels}


def _scale_sum(planes: list[dict[int, Plane]], plan: _ScalePlan) -> float:
    """One scale's weighted features, from the reference's and the distorted image's XYB planes
    (each taken from ``planes`` as its channel starts, so it is freed with its maps)."""
    pixels = float(next(iter(planes[0].values())).size)
    total = 0.0
    for channel in plan.channels:
        features = [(feature, weight) for feature, feature_channel, weight in plan.features
                    if feature_channel == channel]
        maps = _channel_maps([planes[0].pop(channel), planes[1].pop(channel)],
                             {feature % 3 for feature, _ in features})
        for feature, weight in features:
            values = maps[feature % 3]
            if feature >= 3:  # the 4-norm
                squares = values * values
                total += weight * (float(np.sum(squares * squares, dtype=np.float64)) / pixels) ** 0.25
            else:
                total += weight * float(np.sum(values, dtype=np.float64)) / pixels
    return total


def _score(images: list[Linear]) -> float:
    """SSIMULACRA2 of two images in linear RGB, the reference and the distorted one.

    ``images`` is emptied as the scales go: each scale keeps only the XYB planes it needs and the
    next scale's smaller images, so at full size the peak is a few planes, not all of them.
    """
    height, width = images[0][0].shape
    plans = _plans(_scale_count(width, height))
    last = max((scale for scale, plan in enumerate(plans) if plan.features), default=-1)
    total = 0.0
    for scale in range(last + 1):
        planes = []
        for index in range(2):
            image = images[index]
            if scale < last:
                images[index] = _downsample_image(image)
            if plans[scale].features:
                planes.append(_channel_planes(image, plans[scale].channels))
            del image
        if scale == last:
            images.clear()
        if plans[scale].features:
            total += _scale_sum(planes, plans[scale])
    total *= _SUM_SCALE
    total = _POLYNOMIAL[0] * total + _POLYNOMIAL[1] * total**2 + _POLYNOMIAL[2] * total**3
    return 100.0 - 10.0 * total**_EXPONENT if total > 0 else 100.0


def _pixels(image: pyvips.Image) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8] | None]:
    """The colour bands (grey or RGB) and the alpha band, if any, of an 8-bit image."""
    if image.format != "uchar" or image.bands not in (1, 2, 3, 4):
        raise ValueError(f"SSIMULACRA2 needs 8-bit grey or sRGB, got {image.bands} {image.format} bands")
    pixels = np.frombuffer(image.write_to_memory(), dtype=np.uint8).reshape(image.height, image.width, image.bands)
    colour_bands = 3 if image.bands >= 3 else 1
    alpha = pixels[:, :, colour_bands] if image.bands in (2, 4) else None
    return pixels[:, :, :colour_bands], alpha


def _linear(colour: npt.NDArray[np.uint8], alpha: npt.NDArray[np.uint8] | None, background: float) -> Linear:
    """Linear RGB of the image over a grey background, blended in gamma-encoded sRGB (libjxl).
    Grey is the same plane three times, as Pillow's convert("RGB") makes grey RGB."""
    planes: list[Plane] = []
    opacity = None if alpha is None else alpha.astype(np.float32) * np.float32(1.0 / 255.0)
    for band in range(colour.shape[2]):
        if opacity is None:
            planes.append(_LINEAR_LUT[colour[:, :, band]])
            continue
        value = colour[:, :, band].astype(np.float32) * np.float32(1.0 / 255.0) * opacity
        value += (np.float32(1.0) - opacity) * np.float32(background)
        curve = ((value + np.float32(0.055)) * np.float32(1.0 / 1.055)) ** np.float32(2.4)
        planes.append(np.where(value <= np.float32(0.04045), value * np.float32(1.0 / 12.92), curve))
    if len(planes) == 1:
        return (planes[0], planes[0], planes[0])
    return (planes[0], planes[1], planes[2])


def ssimulacra2(reference: pyvips.Image, distorted: pyvips.Image) -> float:
    """The SSIMULACRA2 score of ``distorted`` against ``reference``: 100 when identical, lower worse.

    Both must be the same size and 8-bit: sRGB (3 bands), grey (1), either with alpha (4, 2).
    An image under 8 pixels on a side has no scale to compare and scores 100, as in the port.
    """
    if (reference.width, reference.height) != (distorted.width, distorted.height):
        raise ValueError(f"SSIMULACRA2 compares images of one size, got {reference.width}x{reference.height}"
                         f" and {distorted.width}x{distorted.height}")
    reference_colour, reference_alpha = _pixels(reference)
    distorted_colour, distorted_alpha = _pixels(distorted)
    backgrounds = (0.5,) if reference_alpha is None and distorted_alpha is None else (0.1, 0.9)
    return min(_score([_linear(reference_colour, reference_alpha, background),
                       _linear(distorted_colour, distorted_alpha, background)])
               for background in backgrounds)
