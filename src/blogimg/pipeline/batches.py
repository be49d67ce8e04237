"""``run_batch``: the one way a batch enters the queue — ``generate``, ``retry`` and the API call it.

It enqueues the work as one batch; given a worker, it then makes the batch's images here and
summarises what happened. Without one (the API), the batch waits for whichever worker — embedded
in ``serve`` or ``blogimg worker`` elsewhere — claims it first.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from blogimg.db.database import Database
from blogimg.db.jobs import PostsToEnqueue, Work
from blogimg.domain import EventKind, ProgressEvent, RunSummary
from blogimg.pipeline.worker import Worker

EventCallback = Callable[[ProgressEvent], None]


async def run_batch(database: Database, work: Work, *, worker: Worker | None = None,
                    on_event: EventCallback | None = None) -> RunSummary:
    """Enqueue ``work`` as one batch; with ``worker``, make its images and return what happened."""
    started = time.monotonic()
    emit = on_event or (lambda event: None)
    enqueued = await database.queue.enqueue(work)
    summary = RunSummary(batch_id=enqueued.batch_id, image_ids=enqueued.image_ids, post_ids=enqueued.post_ids,
                         created=enqueued.created, queued=len(enqueued.queued_ids),
                         already_done=len(enqueued.image_ids) - len(enqueued.queued_ids))
    if isinstance(work, PostsToEnqueue):
        summary.posts = len(work.posts)
        summary.opted_out = sum(post.opted_out for post in work.posts)
        summary.prompts = sum(len(post.prompts) for post in work.posts)
    if worker is None:
        return summary
    emit(ProgressEvent(EventKind.QUEUED, total=summary.queued))
    if enqueued.queued_ids:
        await worker.run(batch_id=enqueued.batch_id)
    results = await database.reporting.batch_results(enqueued.batch_id)
    summary.succeeded, summary.failed = results.succeeded, results.failed
    summary.bytes_original, summary.bytes_stored = results.bytes_original, results.bytes_stored
    summary.failures = list(results.failures)
    summary.provider_calls = results.ledger.calls
    summary.cost_usd, summary.unknown_cost_calls = results.ledger.cost_usd, results.ledger.unknown_cost_calls
    summary.seconds = time.monotonic() - started
    emit(ProgressEvent(EventKind.FINISHED, total=summary.queued, done=summary.succeeded + summary.failed))
    return summary
