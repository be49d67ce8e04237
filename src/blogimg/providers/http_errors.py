"""Reading what HTTP APIs say about failures: Retry-After in its three spellings, and status → outcome.

A 429 that will clear by itself ("too many requests, slow down") stays a ``transient`` outcome but
carries the error code :data:`RATE_LIMITED`: the chain then paces the provider and retries with
more patience instead of counting it as a failure (:mod:`blogimg.pipeline.pacing`). A 429 that
says money or quota ran out is ``quota`` instead; each provider reads its own body to tell them apart.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

from blogimg.domain import Outcome

#: The error code of a call refused for going too fast (HTTP 429 that will clear by itself).
RATE_LIMITED = "rate_limited"

# Waits above this are not a hint we can use for one image; the chain falls back instead.
_LONGEST_SENSIBLE_WAIT = 24 * 3600.0


def retry_after_seconds(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """The server's wait from ``retry-after-ms``, ``retry-after`` (seconds or an HTTP date); None if absent or nonsense."""
    if not headers:
        return None
    lowered = {key.lower(): value for key, value in headers.items()}
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = lowered.get(name)
        if raw is None:
            continue
        try:
            seconds = float(raw) / divisor
        except ValueError:
            parsed = email.utils.parsedate_tz(raw) if divisor == 1.0 else None
            if parsed is None:
                continue
            seconds = email.utils.mktime_tz(parsed) - (time.time() if now is None else now)
        if 0 <= seconds <= _LONGEST_SENSIBLE_WAIT:
            return seconds
    return None


def outcome_for_status(status: int) -> Outcome:
    """The outcome class of an HTTP error status when the body says nothing more specific."""
    if status in (401, 402, 403):
        return Outcome.QUOTA  # credentials or billing: pausing the provider is the only cure
    if status in (408, 409, 425, 429) or status >= 500:
        return Outcome.TRANSIENT
    return Outcome.INVALID
