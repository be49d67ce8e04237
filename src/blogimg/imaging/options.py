"""How images are encoded: one value object built from Settings, so tests can vary one thing at a time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from blogimg.imaging.colour_profile import DEFAULT_MAX_PROFILE_BYTES
from blogimg.imaging.encoder_memory import DEFAULT_BUDGET_BYTES
from blogimg.imaging.limits import (
    DEFAULT_MAX_ASPECT_RATIO,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_VARIANT_PIXELS,
    ImageLimits,
)

if TYPE_CHECKING:
    from blogimg.config import Settings

__all__ = ["ImagingOptions", "QualitySearch"]

QualitySearch = Literal["slope", "floor", "target", "off"]  #: as Settings.quality_search


@dataclass(frozen=True, slots=True)
class ImagingOptions:
    """How images are encoded; built from Settings so tests can vary one thing at a time."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO  #: longest side over shortest
    max_icc_profile_bytes: int = DEFAULT_MAX_PROFILE_BYTES  #: largest sRGB profile kept in files
    variant_widths: tuple[int, ...] = (480, 768, 1024, 1536)
    max_variant_pixels: int = DEFAULT_MAX_VARIANT_PIXELS  #: the largest variant; the master keeps all
    variant_formats: tuple[str, ...] = ("avif", "webp")
    #: Calibrated on the benchmark corpus: with the floor below, each format's mean score is
    #: sharp's defaults' (BENCHMARKS.md).
    jpeg_quality: int = 83
    webp_quality: int = 78
    avif_quality: int = 51
    avif_effort: int = 3
    avif_chroma: str = "4:4:4"  #: or "4:2:0" (chroma subsampled)
    webp_effort: int = 6  #: lossy WebP; lossless WebP stays at 4 (encoders.py)
    #: "slope": each file where a score point costs *_point_bytes, at least *_lowest_score at the
    #: check size (quality_balance.py); "floor": the fixed qualities above, searched only for files
    #: scoring below floor_score or above ceiling_score; "target": every file at its target score;
    #: "off" (quality_search.py)
    quality_search: QualitySearch = "slope"
    #: slope mode: bytes per megapixel one SSIMULACRA2 point is worth (0: that format keeps the
    #: floor search), and the lowest score of a file at the check size. Calibrated on the benchmark
    #: corpus (BENCHMARKS.md): each format's mean score at least sharp's defaults' less 0.5, none
    #: below sharp's lowest. AVIF keeps the floor search: the slope search (then a walk from the
    #: fixed quality) found only 3% fewer AVIF bytes there, for two more trials an image (the
    #: encoder, not the quality, is what AVIF lacks: see the allocation bound); its scan
    #: (quality_balance.SCAN) is not calibrated.
    jpeg_point_bytes: float = 6500.0
    webp_point_bytes: float = 4200.0
    avif_point_bytes: float = 0.0
    jpeg_lowest_score: float = 68.0
    webp_lowest_score: float = 65.0
    avif_lowest_score: float = 60.0
    #: 60 (medium-high quality) rather than 70: lifting every file to 70 on the 480-px probe cost
    #: AVIF a fifth more bytes on the benchmark corpus, most of it on images that score 3 to 13
    #: points higher at the widths readers see than on the probe.
    floor_score: float = 60.0
    ceiling_score: float = 90.0
    jpeg_target_score: float = 70.0
    webp_target_score: float = 70.0
    avif_target_score: float = 70.0
    jpeg_encoder: str = "mozjpeg"  #: or "jpegli" (encoders.py)
    thumbnail_size: int = 300
    threads: int = 0  #: files of one image encoded at once; 0: one per core, at most 4
    encoder_memory_bytes: int = DEFAULT_BUDGET_BYTES  #: held by all encoders at once, process-wide
    provenance_labels: bool = True  #: every file says in XMP how it was made (labels.py)

    @classmethod
    def from_settings(cls, settings: Settings) -> ImagingOptions:
        return cls(
            threads=settings.imaging_threads,
            encoder_memory_bytes=settings.imaging_encoder_memory_mb * 1024 * 1024,
            max_pixels=settings.max_pixels,
            max_aspect_ratio=settings.max_aspect_ratio,
            max_icc_profile_bytes=settings.max_icc_profile_bytes,
            variant_widths=tuple(sorted(set(settings.variant_widths))),
            max_variant_pixels=settings.max_variant_pixels,
            variant_formats=tuple(dict.fromkeys(settings.variant_formats)),
            jpeg_quality=settings.jpeg_quality,
            webp_quality=settings.webp_quality,
            avif_quality=settings.avif_quality,
            avif_effort=settings.avif_effort,
            avif_chroma=settings.avif_chroma_subsampling,
            webp_effort=settings.webp_effort,
            quality_search=settings.quality_search,
            jpeg_point_bytes=settings.jpeg_point_bytes,
            webp_point_bytes=settings.webp_point_bytes,
            avif_point_bytes=settings.avif_point_bytes,
            jpeg_lowest_score=settings.jpeg_lowest_score,
            webp_lowest_score=settings.webp_lowest_score,
            avif_lowest_score=settings.avif_lowest_score,
            floor_score=settings.floor_score,
            ceiling_score=settings.ceiling_score,
            jpeg_target_score=settings.jpeg_target_score,
            webp_target_score=settings.webp_target_score,
            avif_target_score=settings.avif_target_score,
            jpeg_encoder=settings.jpeg_encoder,
            thumbnail_size=settings.thumbnail_size,
            provenance_labels=settings.provenance_labels,
        )

    @property
    def limits(self) -> ImageLimits:
        return ImageLimits(max_pixels=self.max_pixels, max_aspect_ratio=self.max_aspect_ratio)

    def fixed_quality(self, image_format: str) -> int:
        """The quality used without a search (and for the thumbnail, which is never searched)."""
        return {"jpeg": self.jpeg_quality, "webp": self.webp_quality, "avif": self.avif_quality}.get(image_format, 100)

    def target_score(self, image_format: str) -> float:
        return {"jpeg": self.jpeg_target_score, "avif": self.avif_target_score}.get(image_format,
                                                                                      self.webp_target_score)

    def point_bytes(self, image_format: str) -> float:
        return {"jpeg": self.jpeg_point_bytes, "avif": self.avif_point_bytes}.get(image_format, self.webp_point_bytes)

    def lowest_score(self, image_format: str) -> float:
        return {"jpeg": self.jpeg_lowest_score, "avif": self.avif_lowest_score}.get(image_format,
                                                                                      self.webp_lowest_score)
