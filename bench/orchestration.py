"""Benchmark 2: the pipeline's schedule against the ideal one, and its CPU cost per image.

200 generations from a fake provider (lognormal latency; 5% answer 429 with Retry-After, 3%
fail with a 5xx), concurrency 8, a rate limit in images per minute, the real queue, worker,
ledger and storage. The baseline is the ideal schedule for the very calls that were made:

    ideal = max(ceil(N / C) × mean per-image provider time including retry work, N / rate)

where retry work is each failed call's latency plus the wait it earned (Retry-After, or the
mean exponential backoff). ideal / wall is the result (1.0 = no time lost to orchestration).
Wall and CPU are taken from the batch's "queued" event to its "finished" event (the drain, not
opening and migrating the database). CPU per image is the process's CPU time over the drain,
less the CPU time spent inside process_image (measured in its own thread, call by call), / N.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import math
import random
import tempfile
import time
from functools import cache
from pathlib import Path

from bench.common import Comparison, Measure, write_result
from blogimg.config import Settings
from blogimg.domain import EventKind, ImageRequest, Outcome, ProgressEvent, ProviderImage, Size
from blogimg.errors import ProviderError
from blogimg.imaging.process import ImagingOptions, process_image
from blogimg.pipeline import worker as worker_module
from blogimg.pipeline.generate import generate
from blogimg.providers.base import ProviderInfo
from blogimg.providers.registry import ProviderRegistry
from blogimg.storage import MemoryStorage
from blogimg.testing import FakeProvider

RETRY_AFTER = 0.05
IMAGES = 1024  #: distinct provider images drawn up front (a few prompts share one)
BACKOFF_BASE = 0.02


class LognormalProvider:
    """Lognormal latency around ``mean``; 5% 429 + Retry-After, 3% 503; logs every call."""

    info = ProviderInfo(name="lognormal", description="benchmark fake", models=("bench-1",), offline=True)

    def __init__(self, mean: float, seed: int) -> None:
        self.rng = random.Random(seed)
        sigma = 0.5
        self.mu, self.sigma = math.log(mean) - sigma**2 / 2, sigma  # so the mean is ``mean``
        self.calls: list[tuple[str, float, str]] = []  #: (prompt, latency, outcome)
        # A real provider's image arrives over the network and costs the pipeline no CPU to make, so
        # distinct images are drawn before timing starts; each prompt picks one by its hash.
        self._images = _provider_images()

    def __call__(self, settings: object | None = None) -> LognormalProvider:
        return self

    def estimate_cost(self, request: ImageRequest) -> float:
        return 0.0

    async def generate(self, request: ImageRequest) -> ProviderImage:
        latency = self.rng.lognormvariate(self.mu, self.sigma)
        roll = self.rng.random()
        outcome = "rate_limited" if roll < 0.05 else "server_error" if roll < 0.08 else "ok"
        self.calls.append((request.prompt, latency, outcome))
        await asyncio.sleep(latency)
        if outcome == "rate_limited":
            raise ProviderError(Outcome.TRANSIENT, "429", http_status=429, retry_after=RETRY_AFTER)
        if outcome == "server_error":
            raise ProviderError(Outcome.TRANSIENT, "503", http_status=503)
        digest = hashlib.sha256(request.prompt.encode()).digest()
        return ProviderImage(data=self._images[int.from_bytes(digest[:4]) % IMAGES], model="bench-1", cost_usd=0.0)

    async def aclose(self) -> None:
        return None

    def provider_seconds(self) -> float:
        """Σ latency of every call plus the wait each failed call earned before its retry."""
        total, failures_in_a_row = 0.0, {}
        for prompt, latency, outcome in self.calls:
            total += latency
            if outcome == "rate_limited":
                total += RETRY_AFTER
            elif outcome == "server_error":
                retry = failures_in_a_row.get(prompt, 0)
                total += BACKOFF_BASE * 2**retry  # the jitter (×0.5–1.5) averages to ×1
            failures_in_a_row[prompt] = failures_in_a_row.get(prompt, 0) + 1 if outcome != "ok" else 0
        return total


@cache
def _provider_images() -> list[bytes]:
    # Drawn once per process: every run of every scenario uses the same set.
    draw = FakeProvider(image_size=(32, 24))._image
    return [draw(ImageRequest(prompt=f"image {n}", size=Size(32, 24))) for n in range(IMAGES)]


def write_posts(directory: Path, count: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for number in range(count):
        (directory / f"post-{number}.md").write_text(f"---\ntitle: Benchmark post {number}\n---\nbody\n")
    return directory


IMAGING_CPU: list[float] = []


def _measured_imaging(data: bytes, options: ImagingOptions, focus=None, label=None):  # type: ignore[no-untyped-def]
    """process_image, adding the CPU time it used (in its worker thread) to IMAGING_CPU[-1]."""
    started = time.thread_time()
    try:
        return process_image(data, options, focus, label)
    finally:
        IMAGING_CPU[-1] += time.thread_time() - started


async def one_run(count: int, concurrency: int, rate: float, mean: float, seed: int, work: Path) -> dict:
    provider = LognormalProvider(mean, seed)
    registry = ProviderRegistry({}, plugins=False)
    registry.register("lognormal", provider)
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{work / f'run-{seed}.db'}", storage_path=work / "images",
        max_concurrent=concurrency, rate_limits={"lognormal": rate}, retry_attempts=3, retry_delay=BACKOFF_BASE,
        breaker_threshold=0, variant_widths=[24], variant_formats=["webp"], avif_effort=0, thumbnail_size=16,
        cover_size="96x64",
        # Imaging's CPU is measured per call with thread_time, so it must stay on the calling thread.
        imaging_threads=1,
    )
    posts = write_posts(work / f"posts-{seed}", count)
    IMAGING_CPU.append(0.0)
    marks: dict[str, tuple[float, float]] = {}

    def mark(event: ProgressEvent) -> None:
        # From "queued" to "finished": the drain itself, not opening and migrating the database.
        if event.kind in (EventKind.QUEUED, EventKind.FINISHED):
            marks[event.kind.value] = (time.perf_counter(), time.process_time())

    # Measure imaging exactly (each call's own thread CPU time), and put the real function back
    # afterwards: the benchmark also runs inside the test suite.
    worker_module.process_image = _measured_imaging
    try:
        summary = await generate([posts], settings, providers=["lognormal"], registry=registry,
                                 storage=MemoryStorage(), on_event=mark)
    finally:
        worker_module.process_image = process_image
    wall = marks["finished"][0] - marks["queued"][0]
    cpu = marks["finished"][1] - marks["queued"][1]
    assert summary.succeeded == count, f"only {summary.succeeded} of {count} succeeded"
    imaging_cpu = IMAGING_CPU.pop()
    per_image = provider.provider_seconds() / count
    ideal = max(math.ceil(count / concurrency) * per_image, count * 60.0 / rate)
    return {"wall": wall, "ideal": ideal, "cpu_per_image_ms": max(cpu - imaging_cpu, 0.0) / count * 1000,
            "drain_cpu_per_image_ms": cpu / count * 1000, "imaging_cpu_per_image_ms": imaging_cpu / count * 1000,
            "calls": len(provider.calls)}


def scenario(count: int, runs: int, mean: float, concurrency: int, rate: float, directory: Path,
             first_seed: int) -> tuple[Measure, Measure, Measure, Measure]:
    wall, ideal, ratio, cpu = (Measure("wall", "s"), Measure("ideal", "s"), Measure("ideal/wall", ""),
                               Measure("cpu", "ms/image"))
    for seed in range(first_seed, first_seed + runs):
        result = asyncio.run(one_run(count, concurrency, rate, mean, seed, directory))
        wall.samples.append(result["wall"])
        ideal.samples.append(result["ideal"])
        ratio.samples.append(result["ideal"] / result["wall"])
        cpu.samples.append(result["cpu_per_image_ms"])
    return wall, ideal, ratio, cpu


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="one short run, to prove the benchmark works")
    arguments = parser.parse_args(argv)
    count, runs, mean = (16, 1, 0.01) if arguments.tiny else (200, 5, 0.2)
    concurrency = 8
    rate = concurrency / mean * 60  # as binding as the concurrency, so both limits are exercised
    with tempfile.TemporaryDirectory() as directory:
        wall, ideal, ratio, cpu = scenario(count, runs, mean, concurrency, rate, Path(directory), 0)
        # The same with the rate limit at twice what C slots can use: only the concurrency binds,
        # which separates what the pipeline loses from what two binding limits cost any schedule.
        loose = scenario(count, runs, mean, concurrency, 2 * rate, Path(directory), runs)
    what = f"{count} generations, C={concurrency}, mean latency {mean * 1000:.0f} ms"
    comparisons = [
        Comparison(f"{what}, {rate:.0f}/min", ours=wall.summary(), baseline=ideal.summary(), ratio=ratio.median,
                   ratio_meaning="ideal/wall, 1 = nothing lost", target="≥ 0.95", met=ratio.median >= 0.95),
        Comparison("pipeline CPU per image, imaging excluded", ours=cpu.summary(), baseline={},
                   ratio=cpu.median, ratio_meaning="ms per image", target="≤ 5 ms", met=cpu.median <= 5),
        Comparison(f"{what}, {2 * rate:.0f}/min (only the concurrency binds)", ours=loose[0].summary(),
                   baseline=loose[1].summary(), ratio=loose[2].median, ratio_meaning="ideal/wall, 1 = nothing lost"),
    ]
    notes = [
        f"Why the targets are missed (profiled with py-spy on this benchmark): ideal/wall is {ratio.median:.2f} "
        f"against ≥ 0.95 ({0.95 / ratio.median:.2f}× short) and the pipeline's CPU is {cpu.median:.0f} ms per "
        f"image against ≤ 5 ms ({cpu.median / 5:.1f}× over). Two causes. (1) With the rate limit loosened so "
        f"that only the concurrency binds, ideal/wall is {loose[2].median:.2f}: part of the gap is the ideal "
        "itself, which packs random latencies perfectly into C slots and the rate's spacing at once, where any "
        "real schedule (greedy, one image per free slot) leaves slots idle at the tail and behind the limiter. "
        "(2) The rest is the pipeline: py-spy shows the event loop's thread busy about half the wall time with "
        "SQLAlchemy ORM work (session.execute, flush, get) for about a dozen statements per image (claim, the "
        "job's context, the ledger row before and after the call, completion with variants and events, "
        "heartbeats), each ~1 ms of Python plus aiosqlite's thread hop; a finished provider call waits for it, "
        "and the slot stays held through imaging.",
        "What would close it: fetch the job's context in the claim's RETURNING; write the ledger row and its "
        "completion with Core statements instead of ORM units of work; batch event rows; release the provider "
        "slot before imaging (imaging has its own pool); and judge the schedule against a simulated greedy "
        "schedule of the same calls rather than the perfect packing.",
    ]
    path = write_result("orchestration", "Orchestration against the ideal schedule", comparisons,
                        {"ratio_samples": ratio.samples, "notes": notes}, tiny=arguments.tiny)
    print(f"orchestration: ideal/wall {ratio.median:.3f} (min {min(ratio.samples):.3f}), "
          f"{loose[2].median:.3f} with only the concurrency binding, CPU {cpu.median:.2f} ms/image → {path}")


if __name__ == "__main__":
    main()
