"""The queue's vocabulary: the work a batch is made of, what enqueueing it did, and a held job."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from blogimg.db.posts import PromptSpec
from blogimg.db.tables import BlogPost, ImagePromptRow
from blogimg.domain import ExtractedPost


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job this worker holds, and the token that proves it."""

    image_id: int
    lease_token: str
    attempts: int  #: claims of this job so far, this one included


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a worker needs to make one image."""

    image_id: int
    prompt: ImagePromptRow
    post: BlogPost
    options: dict[str, Any]  #: per-job choices from the API ({} = the worker's defaults)
    variation: int = 0  #: which of the prompt's images this is (0 for posts; 0… for API variations)
    batch_id: int | None = None  #: the batch that queued it last (for log lines)


@dataclass(frozen=True, slots=True)
class PostsToEnqueue:
    """Posts read from markdown: save each with its prompts and queue what is not made yet."""

    posts: Sequence[ExtractedPost]


@dataclass(frozen=True, slots=True)
class PromptsToEnqueue:
    """An API request: explicit prompts and/or a post's own, each in ``variations`` variations."""

    post_id: int | None
    prompts: Sequence[PromptSpec]
    variations: int = 1
    options: dict[str, Any] | None = None  #: per-job choices; None = the worker's defaults
    idempotency_key: str | None = None
    request_hash: str | None = None


@dataclass(frozen=True, slots=True)
class FailedToRetry:
    """Failed images to make again: these ids, or every failed image when None."""

    image_ids: Sequence[int] | None = None
    idempotency_key: str | None = None  #: a repeat with this key answers with the batch the first made
    request_hash: str | None = None


@dataclass(frozen=True, slots=True)
class LostToRemake:
    """Made images whose stored master is gone for good: image id → the master key found missing."""

    lost: Mapping[int, str]


Work = PostsToEnqueue | PromptsToEnqueue | FailedToRetry | LostToRemake


@dataclass(frozen=True, slots=True)
class BatchEnqueued:
    """A batch in the queue: every image it names, and which of them it queued."""

    batch_id: int
    image_ids: tuple[int, ...]  #: every image the request names, made already or queued now
    queued_ids: tuple[int, ...]
    created: bool = True  #: False when an earlier request with the same idempotency key made it
    post_ids: tuple[int, ...] = field(default=())  #: the posts saved, in the order given
