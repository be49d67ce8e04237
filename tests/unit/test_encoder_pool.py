"""The encoder pool (imaging/encoder_pool.py): a format's files start as soon as its own search
ends, not after every search; once a search fails no more work starts, and its error comes after
every started task has ended."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from blogimg.imaging.encoder_pool import run_each_then


def test_a_keys_work_starts_while_a_slower_search_still_runs() -> None:
    files_started = threading.Event()

    def slow_search() -> bool:
        # Ends only once the fast search's file has started (or, failing that, after 10 s).
        return files_started.wait(10)

    def then(key: str, result: object) -> list:
        if key == "fast":
            return [lambda: files_started.set() or f"file of {result}"]
        return [lambda: f"file of {key}"]

    results, files, small = run_each_then({"slow": slow_search, "fast": lambda: "fast choice"}, then,
                                          [lambda: "thumbnail"], threads=2)

    assert results == {"slow": True, "fast": "fast choice"}  # slow saw the fast one's file start
    assert files == ["file of fast choice", "file of slow"]  # in the order the searches ended
    assert small == ["thumbnail"]


@pytest.mark.parametrize("threads", [1, 2])
def test_results_come_back_by_key_and_each_keys_work_in_its_own_order(threads: int) -> None:
    results, files, small = run_each_then(
        {"webp": lambda: 75, "jpeg": lambda: 80},
        lambda key, quality: [lambda width=width: (key, quality, width) for width in (1536, 768)],
        [lambda: "lqip", lambda: "colour"], threads=threads)

    assert results == {"webp": 75, "jpeg": 80}
    assert sorted(files) == sorted([("webp", 75, 1536), ("webp", 75, 768), ("jpeg", 80, 1536), ("jpeg", 80, 768)])
    for key in ("webp", "jpeg"):
        assert [width for name, _, width in files if name == key] == [1536, 768]
    assert small == ["lqip", "colour"]


def test_a_failed_search_starts_no_more_work_and_its_error_comes_after_the_started_work_ends() -> None:
    started: list[str] = []
    ended: list[str] = []
    asked: list[str] = []

    def timed(name: str, seconds: float, result: object = None, *, fails: bool = False) -> Callable[[], object]:
        def task() -> object:
            started.append(name)
            time.sleep(seconds)
            ended.append(name)
            if fails:
                raise RuntimeError("encoder failed")
            return result
        return task

    def then(key: str, _result: object) -> list:
        asked.append(key)
        return [timed(f"file of {key}", 0.0)]

    # Two threads. The AVIF search fails at 0.2 s while the WebP one runs until 1 s; the thread the
    # failure frees may take the thumbnail (1 s) before the failure is seen, or not; either way
    # both threads are busy when it is seen, so the LQIP has not started and never will.
    with pytest.raises(RuntimeError, match="encoder failed"):
        run_each_then({"avif": timed("avif search", 0.2, fails=True), "webp": timed("webp search", 1.0, 75)},
                      then, [timed("thumbnail", 1.0), timed("lqip", 0.0)], threads=2)

    assert asked == []  # the WebP search ended after the failure: none of its files started
    assert "lqip" not in started
    assert sorted(ended) == sorted(started)  # every started task had ended when the error came


def test_one_thread_runs_everything_in_order() -> None:
    order: list[str] = []

    def task(name: str) -> Callable[[], str]:
        return lambda: order.append(name) or name

    results, files, small = run_each_then({"jpeg": task("jpeg search"), "webp": task("webp search")},
                                          lambda key, _result: [task(f"{key} file")], [task("thumbnail")],
                                          threads=1)
    assert order == ["jpeg search", "webp search", "jpeg file", "webp file", "thumbnail"]
    assert (results, files, small) == ({"jpeg": "jpeg search", "webp": "webp search"},
                                       ["jpeg file", "webp file"], ["thumbnail"])
