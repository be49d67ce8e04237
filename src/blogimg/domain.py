"""The values that flow through blogimg: prompts, requests, provider results, events.

All are frozen dataclasses or string enums so they can cross threads, be compared in tests and
be stored as-is in the database.
"""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass, field

from blogimg.errors import InputError
from blogimg.errors import (
    Outcome as Outcome,  # re-exported: defined there so errors.py stays a leaf
)


class Status(enum.StrEnum):
    """Where a generated image (a job) stands."""

    QUEUED = "queued"  #: waiting for a worker to claim it
    RUNNING = "running"  #: claimed by a worker that holds its lease
    SUCCEEDED = "succeeded"  #: files stored and catalogued
    FAILED = "failed"  #: every provider was tried; error_code says why


class PromptKind(enum.StrEnum):
    """Why a post needs an image."""

    COVER = "cover"  #: the post's lead image, from title, summary and tags
    INLINE = "inline"  #: an ``<!-- image: ... -->`` marker in the body
    SECTION = "section"  #: one per H2 section, when section images are enabled


_SIZE_PATTERN = re.compile(r"^(\d{2,5})x(\d{2,5})$")


@dataclass(frozen=True, slots=True)
class Size:
    """Requested pixel size of an image."""

    width: int
    height: int

    @classmethod
    def parse(cls, text: str) -> Size:
        """Parse ``"1536x1024"``; raise InputError with the accepted form otherwise."""
        match = _SIZE_PATTERN.match(text.strip().lower())
        if not match:
            raise InputError(f"image size {text!r} is not WIDTHxHEIGHT, e.g. 1536x1024")
        width, height = int(match.group(1)), int(match.group(2))
        if not (64 <= width <= 8192 and 64 <= height <= 8192):
            raise InputError(f"image size {text!r} must be between 64 and 8192 pixels per side")
        return cls(width, height)

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


def fingerprint(kind: PromptKind, prompt: str, size: Size, occurrence: int = 0) -> str:
    """Stable identity of one image of a post; the same inputs give the same hex digest.

    The one definition: prompts read from posts and prompts sent to the API are matched by it.
    """
    canonical = "\x1f".join(["v1", kind.value, prompt.casefold(), str(size), str(occurrence)])
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ImagePrompt:
    """One image a post needs, as extracted from its markdown."""

    kind: PromptKind
    position: int  #: order of appearance in the post; the cover is 0
    prompt: str  #: what the image should show, sent to providers
    size: Size
    fingerprint: str  #: stable hash of what makes this image; re-runs match on it
    alt_hint: str = ""  #: alt text given by the author, or context to derive it from
    heading: str = ""  #: the H2 section the image belongs to, if any
    line: int | None = None  #: 1-based source line of the marker or heading


@dataclass(frozen=True, slots=True)
class ExtractedPost:
    """A post as read from markdown, with the images it needs."""

    slug: str
    title: str
    markdown: str
    summary: str
    tags: tuple[str, ...]
    language: str
    prompts: tuple[ImagePrompt, ...]
    opted_out: bool = False  #: front matter said ``images: false``
    source_path: str | None = None


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """What a provider is asked to make."""

    prompt: str
    size: Size
    quality: str = "high"
    kind: PromptKind = PromptKind.COVER
    title: str = ""  #: the post's title, for providers that set type (the card)
    subtitle: str = ""  #: section heading or summary, for providers that set type
    tags: tuple[str, ...] = ()
    #: which of several images of one prompt: a provider that draws the same request the same
    #: way (the card) must vary by it, or "variations" would be copies
    variation: int = 0


@dataclass(frozen=True, slots=True)
class ProviderImage:
    """A successful provider call: untrusted image bytes plus what the call cost."""

    data: bytes
    model: str
    cost_usd: float | None  #: None means the price is unknown, never free
    revised_prompt: str | None = None
    alt_text: str | None = None  #: what the provider knows it drew, when it knows
    #: the region that must survive any crop, as (left, top, right, bottom) fractions of the
    #: width and height (0..1), when the provider knows it (the card: where it set the title)
    focus: tuple[float, float, float, float] | None = None


@dataclass(frozen=True, slots=True)
class StoredVariant:
    """One encoded file of a finished image, already in storage."""

    format: str
    width: int
    height: int
    bytes: int
    storage_key: str
    #: how it was encoded (quality search): the quality chosen, its SSIMULACRA2 score against the
    #: source at this size, and the encoder; None where not searched or not measured
    quality: int | None = None
    score: float | None = None
    encoder: str | None = None


@dataclass(frozen=True, slots=True)
class FinishedImage:
    """What a worker made of one job: stored files and what it took, for the catalogue row."""

    provider: str
    model: str
    cost_usd: float | None  #: every call of the job; None when any call's price is unknown
    latency_ms: int  #: from the first provider call to the image in hand
    processing_ms: int
    width: int
    height: int
    format: str
    bytes_original: int
    bytes_stored: int
    sha256: str
    storage_key: str
    thumbnail_key: str
    alt_text: str
    revised_prompt: str | None
    lqip: str
    dominant_color: str
    variants: tuple[StoredVariant, ...]
    #: C2PA (pipeline/provenance.py): the provider's signed original, kept byte for byte, and what
    #: its manifest said: "none", "valid" or "invalid", with the SDK's validation state and codes
    original_key: str | None = None
    original_sha256: str | None = None
    c2pa_manifest: str = "none"
    c2pa_detail: str | None = None
    #: how the master was encoded, as StoredVariant's quality, score and encoder
    master_quality: int | None = None
    master_score: float | None = None
    master_encoder: str | None = None


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One provider call, for the cost ledger (``generation_attempts``)."""

    attempt: int  #: 1-based number of this call within the job
    provider: str
    model: str | None
    outcome: Outcome
    latency_ms: int
    cost_usd: float | None
    http_status: int | None = None
    error: str | None = None


class EventKind(enum.StrEnum):
    """Kinds of progress events a run emits, in the order they can occur for one image."""

    QUEUED = "queued"  #: the batch's jobs are in the queue; ``total`` is set
    STARTED = "started"  #: a worker claimed the image
    ATTEMPT = "attempt"  #: a provider call ended (any outcome)
    SUCCEEDED = "succeeded"  #: the image is stored and catalogued
    FAILED = "failed"  #: the image failed for good
    FINISHED = "finished"  #: the batch is done; always the last event


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """Something that happened in a run, for progress bars and logs."""

    kind: EventKind
    image_id: int | None = None
    total: int = 0
    done: int = 0
    attempt: AttemptRecord | None = None
    detail: str = ""


@dataclass(slots=True)
class RunSummary:
    """What a batch did: enqueued (every run) and, when it was drained here, made."""

    batch_id: int | None = None
    image_ids: tuple[int, ...] = ()  #: every image the batch names, made already or queued now
    post_ids: tuple[int, ...] = ()  #: the posts saved, in the order given
    created: bool = True  #: False when an earlier request with the same idempotency key made it
    posts: int = 0
    opted_out: int = 0
    prompts: int = 0
    queued: int = 0
    already_done: int = 0
    succeeded: int = 0
    failed: int = 0
    provider_calls: int = 0
    cost_usd: float = 0.0
    unknown_cost_calls: int = 0
    bytes_original: int = 0
    bytes_stored: int = 0
    seconds: float = 0.0
    failures: list[tuple[int, str, str]] = field(default_factory=list)
