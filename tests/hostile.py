"""Helpers for tests of hostile input: code run in a child process under time and memory caps,
and ``blogimg serve`` on a loopback port.

Input that hangs or eats memory must fail a test cleanly wherever the code under test is wrong
(the code before a fix included): a child process is killed at its deadline, and its address
space is capped, so a memory bomb ends in MemoryError there instead of taking the machine.
The child imports the same blogimg the test does.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import blogimg
from tests.support import BLOGIMG, cli_environment

#: The blogimg under test, for children: what this process imported, not whatever is installed.
SOURCE_ROOT = str(Path(blogimg.__file__).resolve().parents[1])
MEMORY_CAP = 1 << 30  #: address space of a child, in bytes: far above a post's needs


@dataclass(frozen=True)
class Outcome:
    """How a child ended: ``timed_out``, or its exit code and output; and how long it took."""

    timed_out: bool
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float

    def describe(self) -> str:
        if self.timed_out:
            return f"still running after {self.seconds:.0f} s"
        return f"exit {self.returncode} after {self.seconds:.1f} s: {self.stdout.strip()[-300:]} {self.stderr.strip()[-600:]}"


def _cap_memory(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _child_environment(**extra: str) -> dict[str, str]:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [SOURCE_ROOT, environment.get("PYTHONPATH")]))
    environment.update(extra)
    return environment


def run_bounded(code: str, *, seconds: float, memory: int = MEMORY_CAP, cwd: Path | None = None) -> Outcome:
    """Run Python ``code`` in a child limited to ``seconds`` and ``memory`` bytes of address space."""
    started = time.monotonic()
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=_child_environment(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: _cap_memory(memory))
    try:
        stdout, stderr = child.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        child.kill()
        stdout, stderr = child.communicate()
        return Outcome(True, None, stdout, stderr, time.monotonic() - started)
    return Outcome(False, child.returncode, stdout, stderr, time.monotonic() - started)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Server:
    base: str
    port: int
    process: subprocess.Popen[str]


@contextlib.contextmanager
def serving(directory: Path, *, memory: int = 3 << 30, **settings: str) -> Iterator[Server]:
    """``blogimg serve --no-worker`` on a free loopback port with ``settings`` (BLOGIMG_* variables)."""
    port = free_port()
    environment = cli_environment(directory / "data", **settings)
    environment["PYTHONPATH"] = _child_environment()["PYTHONPATH"]
    process = subprocess.Popen([*BLOGIMG, "serve", "--no-worker", "--port", str(port)], cwd=directory,
                               env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               preexec_fn=lambda: _cap_memory(memory))
    server = Server(f"http://127.0.0.1:{port}", port, process)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if call(server, "GET", "/healthz", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            assert process.poll() is None, f"server exited: {process.stdout.read() if process.stdout else ''}"
            assert time.monotonic() < deadline, "server did not answer /healthz within 60 s"
            time.sleep(0.2)
        yield server
    finally:
        process.kill()
        process.wait(timeout=30)
        if process.stdout:
            process.stdout.close()


def call(server: Server, method: str, path: str, body: object = None, *, timeout: float = 10) -> tuple[int, dict]:
    """(status, JSON body) of one request; error statuses are answers too."""
    request = urllib.request.Request(server.base + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")
