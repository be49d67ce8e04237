"""The worker's log lines about a job: one per provider call and one when the job ends.

With ``BLOGIMG_LOG_FORMAT=json`` each is an object with the job's ``image_id`` and ``batch_id``
(bound for the job's task by :func:`job_started`), the call's ``provider``, ``model``,
``attempt``, ``outcome`` and ``duration_ms``; the job's last line has its whole duration.
Errors are the outcome's class and the provider's one-line message, never a prompt or post.
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar

from blogimg import logs
from blogimg.domain import AttemptRecord, Outcome

log = logging.getLogger("blogimg.pipeline.jobs")
_started: ContextVar[float | None] = ContextVar("blogimg_job_started", default=None)


def job_started(image_id: int) -> None:
    """Call first thing in a job's own task: its lines from here on name the image."""
    logs.bind(image_id=image_id)
    _started.set(time.monotonic())


def attempt_ended(attempt: AttemptRecord) -> None:
    """One line per provider call: INFO when it succeeded, WARNING otherwise."""
    fields = {"provider": attempt.provider, "model": attempt.model, "attempt": attempt.attempt,
              "outcome": attempt.outcome.value, "duration_ms": attempt.latency_ms}
    if attempt.outcome is Outcome.OK:
        log.info("provider call ok", extra=fields)
    else:
        log.warning("provider call ended %s: %s", attempt.outcome.value, attempt.error or "", extra=fields)


def job_ended(succeeded: bool, detail: str) -> None:
    """The job's last line, with its duration since :func:`job_started`."""
    started = _started.get()
    duration = round((time.monotonic() - started) * 1000) if started is not None else None
    if succeeded:
        log.info("image succeeded", extra={"provider": detail, "duration_ms": duration})
    else:
        log.warning("image failed: %s", detail, extra={"duration_ms": duration})
