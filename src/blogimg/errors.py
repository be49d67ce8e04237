"""Every error blogimg raises on purpose.

The tree::

    BlogimgError                  one clear line for the user; the CLI prints it and exits non-zero
    ├── ConfigurationError        settings that cannot work (unknown provider, unwritable directory)
    ├── InputError                input the user gave us is wrong
    │   ├── PostParseError        a post that cannot be read (broken front matter, not markdown)
    │   └── ConflictError         a request that contradicts an earlier one (an idempotency key reused)
    ├── NotFoundError             an id that names nothing
    │   └── JobGoneError          a claimed job whose image was deleted while it waited
    ├── ProviderError             one provider call did not give an image; carries its Outcome
    ├── BudgetExceededError       a call that would not fit the daily or monthly budget
    ├── ImageRejectedError        provider bytes we refuse to decode (unknown format, too many pixels, corrupt)
    ├── StorageError              a file could not be stored, read or deleted
    │   ├── InvalidKeyError       a storage key that could escape its root or is malformed
    │   └── StorageFullError      the storage folder's disk is full (also an OutOfSpaceError)
    ├── DatabaseError             the catalogue could not be opened, migrated or written
    │   ├── DatabaseUnavailableError  the connection kept being lost, retries and all
    │   └── DatabaseFullError     the database's disk is full (also an OutOfSpaceError)
    └── OutOfSpaceError           a disk is full: the run stops, unfinished images stay queued
"""

from __future__ import annotations

import enum


class Outcome(enum.StrEnum):
    """How one provider call ended; decides what the chain does next.

    Defined here, beside ProviderError which carries it, so this module stays a leaf that
    imports nothing of ours; ``blogimg.domain`` re-exports it.
    """

    OK = "ok"  #: an image came back
    REFUSED = "refused"  #: safety or policy refusal; never retried on the same provider
    TRANSIENT = "transient"  #: 429, 5xx, timeout, reset; retried with backoff
    QUOTA = "quota"  #: billing, quota or credentials; the provider is paused for the run
    INVALID = "invalid"  #: our request was wrong; retrying the same request cannot help
    EMPTY = "empty"  #: the call succeeded but no image came back; never a success
    #: only in the ledger: the row written before the call; one left pending is a call that died
    PENDING = "pending"


class BlogimgError(Exception):
    """Base of every error blogimg raises on purpose; its message is one line for the user."""


class ConfigurationError(BlogimgError):
    """Settings that cannot work as given."""


class InputError(BlogimgError):
    """Input given by the user is wrong (a missing path, a file that is not markdown)."""


class PostParseError(InputError):
    """A post that cannot be read."""


class ConflictError(InputError):
    """A request that contradicts an earlier one, e.g. an Idempotency-Key reused with another body."""


class NotFoundError(BlogimgError):
    """An id that names no post, prompt, image or batch."""


class JobGoneError(NotFoundError):
    """A job a worker claimed whose image was deleted meanwhile: nothing is left to make."""


class ProviderError(BlogimgError):
    """A provider call that produced no usable image.

    ``outcome`` says how the chain treats it (retry, fall back, pause); ``retry_after`` is the
    server's own wait in seconds when it sent one, and wins over computed backoff. ``code`` is
    the image's error code when it fails for this reason (default: the outcome's name).
    """

    def __init__(
        self,
        outcome: Outcome,
        message: str,
        *,
        http_status: int | None = None,
        retry_after: float | None = None,
        cost_usd: float | None = 0.0,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.code = code or outcome.value
        self.http_status = http_status
        self.retry_after = retry_after
        self.cost_usd = cost_usd


class BudgetExceededError(BlogimgError):
    """A call whose estimated cost does not fit what is left of a budget; it is not made."""


class ImageRejectedError(BlogimgError):
    """Bytes that are not an image we are willing to decode."""


class StorageError(BlogimgError):
    """A storage backend failed to store, read or delete a file."""


class InvalidKeyError(StorageError):
    """A storage key that is malformed or could escape the storage root."""


class DatabaseError(BlogimgError):
    """The catalogue database could not be opened, migrated or written."""


class DatabaseUnavailableError(DatabaseError):
    """The connection to the database was lost on every try: the server is down or unreachable.

    Losing it once is not an error at all (the work is retried); this says it stayed lost.
    """


class OutOfSpaceError(BlogimgError):
    """A disk is full. Not the image's fault, and no retry soon can help: a worker stops and
    gives its jobs back to the queue, so a run after space is freed makes them."""


class DatabaseFullError(DatabaseError, OutOfSpaceError):
    """The disk that holds the database (its file, or the server's data) is full."""


class StorageFullError(StorageError, OutOfSpaceError):
    """The disk under the storage folder is full (or its quota is used up)."""
