"""The job queue (a package: enqueue.py, work.py, changes.py): rows of ``generated_images``. Every state change of a job lives here, and only here.

A worker *claims* jobs with one atomic UPDATE … RETURNING, taking queued rows and running rows
whose lease has expired, and stamps them with a fresh lease token. Every later change
(heartbeat, completion, failure, release) names that token in its WHERE clause, so a worker
that lost its lease — paused, partitioned, presumed dead — changes nothing when it wakes up.
On PostgreSQL the candidate rows are picked with FOR UPDATE SKIP LOCKED so workers never wait
on each other; on SQLite the statement runs under BEGIN IMMEDIATE, which serialises writers.

Every change of status goes through :meth:`QueueBase._changed` (changes.py) in the transaction that makes it:
that is where its event row is written (and where later side effects of a change, such as
rollups or a webhook outbox, belong), so a reader never sees a report of a change that did not
commit, nor a change without its report.

A lost connection is retried (``db/failures.py``): every method here is a unit that may run
again, and the few whose first try may have committed unseen (a claim, a completion, a failure)
look for their own earlier success before doing anything twice.
"""

from __future__ import annotations

from blogimg.db.queue.enqueue import Enqueueing
from blogimg.db.queue.work import Working


class JobQueue(Enqueueing, Working):
    """Enqueue, claim, heartbeat, complete, fail, release, requeue and cancel jobs."""


__all__ = ["JobQueue"]
