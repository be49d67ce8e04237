"""One side of the imaging benchmark, run in its own process so its peak memory is its own.

    python -m bench.imaging_side ENGINE MODE CORPUS_FOLDER [--keep FOLDER] [--avif-effort N]

ENGINE is ``blogimg`` (its real ``process_image``) or ``pillow`` (the same job written plainly
with Pillow). MODE is ``identical`` (one JPEG, WebP and AVIF at full size, a 300×300 thumbnail,
an LQIP and the dominant colour, with every encoder setting the sharp side uses too),
``formats`` (each of those four deliverables alone, one pass each, timed apart) or
``production`` (each engine's own choices for blogimg's deliverables). It reads every file first,
warms up on a small image, times one pass over the corpus, and prints one JSON line: seconds,
image count, bytes per format, seconds per pass. With --keep, the outputs are written there *after* the timed pass, for
the quality metric. bench/sharp/run.mjs is the same program for sharp.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

# Both sides get two threads: libvips reads this when it starts.
os.environ.setdefault("VIPS_CONCURRENCY", "2")

THREADS = 2
#: What bench/sharp/run.mjs's identical mode uses, spelled out: blogimg's own defaults may move.
IDENTICAL = {"quality_search": "off", "jpeg_encoder": "mozjpeg", "jpeg_quality": 85, "webp_quality": 80,
             "avif_quality": 50, "webp_effort": 4, "avif_chroma": "4:2:0"}
FORMATS = ("jpeg", "webp", "avif", "thumbnail")


def blogimg_job(mode: str, avif_effort: int):
    from blogimg.imaging.process import ImagingOptions, _encode, process_image, safe_load

    if mode.startswith("format:"):
        # One deliverable alone, through blogimg's own loader and encoder.
        image_format = mode.removeprefix("format:")
        options = ImagingOptions(avif_effort=avif_effort, threads=THREADS, **IDENTICAL)

        def single(data: bytes) -> list[tuple[str, str, bytes]]:
            image, _ = safe_load(data, options.max_pixels)
            if image_format == "thumbnail":
                image = image.thumbnail_image(300, height=300, crop="attention", size="both")
            encoded = _encode(image, "webp" if image_format == "thumbnail" else image_format, options,
                              role="thumbnail" if image_format == "thumbnail" else "variant")
            return [(_name(image_format, encoded.format, encoded.width), encoded.format, encoded.data)]

        return single
    if mode == "identical":
        # sharp's fixed qualities and mozjpeg: both sides run the same encoders with the same settings.
        options = ImagingOptions(variant_widths=(), variant_formats=("webp", "avif"), avif_effort=avif_effort,
                                 threads=THREADS, **IDENTICAL)
    else:
        options = ImagingOptions(threads=THREADS)  # blogimg's production defaults, on two threads

    def job(data: bytes) -> list[tuple[str, str, bytes]]:
        result = process_image(data, options)
        outputs = [(_name(f.role, f.format, f.width), f.format, f.data) for f in result.files]
        outputs.append(("lqip", "webp", result.lqip.encode()))
        return outputs

    return job


def pillow_job(mode: str, avif_effort: int):
    from PIL import Image, ImageOps

    resample = Image.Resampling.LANCZOS
    widths = (480, 768, 1024, 1536)

    def save(image, image_format: str, **options) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, image_format, **options)
        return buffer.getvalue()

    def jpeg(image) -> bytes:
        # Pillow's libjpeg-turbo has no trellis quantisation or scan optimisation: the closest it gets.
        return save(image, "JPEG", quality=85, optimize=True, progressive=True, subsampling="4:2:0")

    def webp(image, quality: int = 80) -> bytes:
        return save(image, "WEBP", quality=quality, method=4)

    def avif(image) -> bytes:
        # libvips maps effort E to the AV1 encoder's speed 9 - E; Pillow takes the speed itself.
        speed = 6 if mode == "production" else 9 - avif_effort
        return save(image, "AVIF", quality=50, speed=speed, subsampling="4:2:0", max_threads=THREADS)

    def thumbnail(image) -> bytes:
        return webp(ImageOps.fit(image, (300, 300), resample, centering=(0.5, 0.5)), 75)  # no saliency crop

    def single(data: bytes) -> list[tuple[str, str, bytes]]:
        image = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
        image_format = mode.removeprefix("format:")
        encode = {"jpeg": jpeg, "webp": webp, "avif": avif, "thumbnail": thumbnail}[image_format]
        return [(image_format, "webp" if image_format == "thumbnail" else image_format, encode(image))]

    def job(data: bytes) -> list[tuple[str, str, bytes]]:
        image = Image.open(io.BytesIO(data))
        image = ImageOps.exif_transpose(image).convert("RGB")
        outputs = [(_name("master", "jpeg", image.width), "jpeg", jpeg(image))]
        sizes = [image.width] if mode == "identical" else sorted({w for w in widths if w < image.width} | {image.width})
        for width in sizes:
            resized = image if width == image.width else image.resize(
                (width, round(image.height * width / image.width)), resample)
            outputs.append((_name("variant", "avif", width), "avif", avif(resized)))
            outputs.append((_name("variant", "webp", width), "webp", webp(resized)))
        outputs.append((_name("thumbnail", "webp", 300), "webp", thumbnail(image)))
        tiny = image.resize((20, max(1, round(image.height * 20 / image.width))), resample)
        outputs.append(("lqip", "webp", webp(tiny, 40)))
        _dominant(image)
        return outputs

    return single if mode.startswith("format:") else job


def _dominant(image) -> str:
    # The same 32-pixel sketch in 4-bit buckets that blogimg computes.
    raw = image.resize((32, max(1, round(image.height * 32 / image.width)))).tobytes()
    pixels = [tuple(raw[index : index + 3]) for index in range(0, len(raw), 3)]
    buckets = Counter((r >> 4, g >> 4, b >> 4) for r, g, b in pixels)
    winner = buckets.most_common(1)[0][0]
    members = [p for p in pixels if (p[0] >> 4, p[1] >> 4, p[2] >> 4) == winner]
    return "#{:02x}{:02x}{:02x}".format(*(round(sum(c) / len(members)) for c in zip(*members, strict=True)))


def _peak_rss_kb() -> int:
    """This process's peak resident memory since its exec (VmHWM), in KiB; 0 where unknown."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)


def _name(role: str, image_format: str, width: int) -> str:
    return f"{role}-{width}.{image_format}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("engine", choices=["blogimg", "pillow"])
    parser.add_argument("mode", choices=["identical", "production", "formats"])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--keep", type=Path)
    parser.add_argument("--avif-effort", type=int, default=4)
    arguments = parser.parse_args(argv)
    manifest = json.loads((arguments.corpus / "manifest.json").read_text())
    sources = [(name, (arguments.corpus / name).read_bytes()) for name in manifest]
    make = blogimg_job if arguments.engine == "blogimg" else pillow_job
    modes = [f"format:{f}" for f in FORMATS] if arguments.mode == "formats" else [arguments.mode]
    warmup = (arguments.corpus / "warmup.png").read_bytes()
    by_format: dict[str, float] = {}
    results = []
    for mode in modes:
        job = make(mode, arguments.avif_effort)
        job(warmup)  # libraries loaded before timing, on both sides alike
        started = time.perf_counter()
        results += [(name, job(data)) for name, data in sources]
        by_format[mode.removeprefix("format:")] = time.perf_counter() - started
    seconds = sum(by_format.values())

    totals: Counter[str] = Counter()
    files: dict[str, list[str]] = {}
    for name, outputs in results:
        for label, image_format, data in outputs:
            key = "lqip" if label == "lqip" else image_format
            totals[key] += len(data)
            files.setdefault(key, []).append(f"{name}/{label}/{hashlib.sha256(data).hexdigest()}")
    # One digest per format over every file, in a fixed order: equal digests on two sides mean
    # byte-identical files, not merely equal sizes.
    digests = {key: hashlib.sha256("\n".join(sorted(entries)).encode()).hexdigest() for key, entries in files.items()}
    if arguments.keep:
        for name, outputs in results:
            folder = arguments.keep / Path(name).stem
            folder.mkdir(parents=True, exist_ok=True)
            for label, _, data in outputs:
                (folder / label).write_bytes(data)
    json.dump({"seconds": seconds, "images": len(sources), "bytes": dict(totals), "by_format": by_format,
               "digests": digests, "peak_rss_kb": _peak_rss_kb()}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
