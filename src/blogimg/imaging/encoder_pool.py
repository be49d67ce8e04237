"""The threads that encode one image's files side by side, shared by every image in the process.

libvips releases the GIL throughout and the encoders (libjpeg, libwebp, libaom) are mostly
single-threaded, so one image's files encoded side by side use every core where one after another
leaves the others idle. The number of encoder threads stays bounded however many images a worker
has in flight: there is one pool per size for the whole process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, as_completed, wait
from functools import cache
from typing import Any, TypeVar

__all__ = ["run_each_then", "run_in_encoder_pool"]

Key = TypeVar("Key", bound=Hashable)


def run_in_encoder_pool(work: list[Callable[[], Any]], threads: int) -> list[Any]:
    """Results of ``work`` in order; the first error is raised after every task has ended."""
    pool = _pool(_threads(threads))
    if pool is None:
        return [task() for task in work]
    futures = [pool.submit(task) for task in work]
    wait(futures)  # never leave a task running on pixels the caller is about to drop
    return [future.result() for future in futures]


def run_each_then(first: Mapping[Key, Callable[[], Any]],
                  then: Callable[[Key, Any], list[Callable[[], Any]]],
                  beside: list[Callable[[], Any]],
                  threads: int) -> tuple[dict[Key, Any], list[Any], list[Any]]:
    """Each of ``first`` (a quality search per format), and as soon as one has its result, the work
    ``then(key, result)`` gives (that format's files); ``beside`` (the small files) fills the
    threads meanwhile. Returns first's results by key, then's results (in the order the keys'
    results came, each key's in its own order) and beside's, in order.

    Starting a format's files when its own search ends, rather than after every search, keeps the
    threads busy while the slowest search finishes. Once a search has failed the image is lost, so
    no more work is started for it: what has not started is cancelled, and the error is raised
    after every started task has ended (never leave a task running on pixels the caller is about
    to drop). Which error: one from ``then`` itself, else the first failed search in ``first``'s
    order, else the first failed task of then's and beside's."""
    pool = _pool(_threads(threads))
    results: dict[Key, Any] = {}
    if pool is None:
        results = {key: task() for key, task in first.items()}
        files = [task() for key, result in results.items() for task in then(key, result)]
        return results, files, [task() for task in beside]
    searches: dict[Future[Any], Key] = {pool.submit(task): key for key, task in first.items()}
    small = [pool.submit(task) for task in beside]
    following: list[Future[Any]] = []
    try:
        for future in as_completed(searches):
            if future.exception() is not None:
                for waiting in [*small, *following]:
                    waiting.cancel()  # only those not yet started; the rest end on their own
                break
            results[searches[future]] = future.result()
            following.extend(pool.submit(task) for task in then(searches[future], future.result()))
    finally:
        wait([*searches, *small, *following])
    for future in searches:
        future.result()  # raises the first failed search's error
    return results, [future.result() for future in following], [future.result() for future in small]


def _threads(threads: int) -> int:
    return threads or min(4, os.cpu_count() or 1)


@cache
def _pool(threads: int) -> ThreadPoolExecutor | None:
    return None if threads <= 1 else ThreadPoolExecutor(threads, thread_name_prefix="blogimg-encode")
