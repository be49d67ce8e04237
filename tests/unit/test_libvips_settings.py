"""libvips' process-wide settings (imaging/decode.py ``harden``): made once, before any thread needs them.

Each check runs in a fresh interpreter: in the test process an earlier test has long since made them.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def run_fresh(code: str, cwd: Path) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True,
                            timeout=120, env={"PATH": "/usr/bin:/bin", "HOME": str(cwd)})
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


def test_opening_a_runtime_sets_libvips_up_before_any_image_is_decoded(tmp_path: Path) -> None:
    # open_runtime is where providers and jobs start their threads: the settings must be made by then.
    output = run_fresh(f"""
        import asyncio, pyvips
        from blogimg.config import Settings
        from blogimg.pipeline.runtime import open_runtime
        before = pyvips.cache_get_max()
        async def main():
            settings = Settings(database_url="sqlite+aiosqlite:///{tmp_path / 'blogimg.db'}",
                                storage_path="{tmp_path / 'images'}")
            async with open_runtime(settings, with_providers=False):
                print(before, pyvips.cache_get_max(), pyvips.concurrency_get() <= 4)
        asyncio.run(main())
    """, tmp_path)
    assert output.split() == ["100", "0", "True"]  # libvips' default cache, then none


def test_first_decodes_on_many_threads_set_libvips_up_once(tmp_path: Path) -> None:
    # Blocking the untrusted loaders visits every operation class: two threads must not do it at once.
    output = run_fresh("""
        import threading, time, pyvips
        from blogimg.imaging import decode
        calls = []
        original = pyvips.block_untrusted_set
        def slow(state):
            calls.append(state)
            time.sleep(0.05)  # a window for a second thread to get in, were there no lock
            original(state)
        pyvips.block_untrusted_set = slow
        start = threading.Barrier(8)
        def first_decode():
            start.wait()
            decode.harden()
        threads = [threading.Thread(target=first_decode) for _ in range(8)]
        for thread in threads: thread.start()
        for thread in threads: thread.join()
        print(len(calls), pyvips.cache_get_max())
    """, tmp_path)
    assert output.split() == ["1", "0"]
