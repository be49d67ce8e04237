"""What browser tests share: the server they drive, signing in, and the checks every view gets.

- :class:`Server` / :func:`running_server`: a real ``blogimg serve`` subprocess (SQLite, local
  storage, the offline ``card`` provider, the embedded worker, a full and a read-only key);
  :meth:`Server.api` calls its API with a bearer key, as a client does.
- :func:`sign_in`: through the sign-in form, as a person does.
- :func:`check_accessibility`: axe-core (vendored, ``vendor/axe-core``) — fails on any serious or
  critical violation, listing them.
- :func:`screenshot`: ``tests/browser/screenshots/<view>-<width>-<theme>.png`` (ignored by git).
- :func:`check_view`: a view at 1280 and 390 px, light and dark: no sideways overflow, axe clean,
  a screenshot of each.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.support import PROVIDER_VARIABLES

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = Path("/usr/bin/chromium")
HERE = Path(__file__).parent
AXE = HERE / "vendor" / "axe-core" / "axe-4.14.1.min.js"
SCREENSHOTS = HERE / "screenshots"
FULL_KEY = "browser-full-key-0123456789abcdef"
READ_KEY = "browser-read-key-0123456789abcdef"
WIDTHS = (1280, 390)
THEMES = ("light", "dark")
SERVER_START_SECONDS = 90.0


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (Debian: apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    return None


# --- the server ------------------------------------------------------------------------------

@dataclass
class Server:
    """A running ``blogimg serve`` and how to reach it."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path
    data: Path

    def api(self, method: str, path: str, body: Any = None, key: str | None = FULL_KEY) -> Any:
        """Call the API as a client does (bearer key); the decoded JSON answer."""
        request = urllib.request.Request(self.url + path, method=method,
                                         data=None if body is None else json.dumps(body).encode())
        request.add_header("Content-Type", "application/json")
        request.add_header("Accept", "application/json")
        if key is not None:
            request.add_header("Authorization", f"Bearer {key}")
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read().decode()
        return json.loads(text) if text else None

    def generate(self, *prompts: str, kind: str = "inline") -> dict[str, Any]:
        """Queue one image per prompt in one batch: ``{"batch_id", "image_ids"}``."""
        answer: dict[str, Any] = self.api("POST", "/api/images/generate",
                                          {"prompts": [{"prompt": prompt, "kind": kind} for prompt in prompts]})
        return answer

    def wait_for_batch(self, batch_id: int, timeout: float = 120.0) -> dict[str, Any]:
        """Poll ``GET /api/batches/{id}`` until the batch is done; its last answer."""
        deadline = time.monotonic() + timeout
        while True:
            progress: dict[str, Any] = self.api("GET", f"/api/batches/{batch_id}")
            if progress["done"]:
                return progress
            if time.monotonic() > deadline:
                raise AssertionError(f"batch {batch_id} not done after {timeout:g} s: {progress}\n{self.log_tail()}")
            time.sleep(0.25)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_environment(data: Path, **extra: str) -> dict[str, str]:
    """The server's environment: nothing of the developer's (keys, settings), the test's settings."""
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith("BLOGIMG_") and name not in PROVIDER_VARIABLES}
    environment.update(
        BLOGIMG_DATABASE_URL=f"sqlite+aiosqlite:///{data / 'blogimg.db'}",
        BLOGIMG_STORAGE_PATH=str(data / "images"),
        BLOGIMG_PROVIDERS="card",
        BLOGIMG_API_KEYS=FULL_KEY,
        BLOGIMG_API_READ_KEYS=READ_KEY,
        # One image at a time with small variants: a batch takes a few seconds, long enough to watch.
        BLOGIMG_MAX_CONCURRENT="1",
        BLOGIMG_VARIANT_WIDTHS="320,640",
        BLOGIMG_AVIF_EFFORT="0",
        BLOGIMG_BUDGET_DAILY_USD="5",
        BLOGIMG_RETRY_DELAY="0.01",
    )
    environment.update(extra)
    return environment


@contextlib.contextmanager
def running_server(data: Path, **extra: str) -> Iterator[Server]:
    """``blogimg serve`` on a free loopback port until the block ends; waits for /healthz."""
    data.mkdir(parents=True, exist_ok=True)
    log = data / "serve.log"
    with log.open("wb") as output:
        port = free_port()
        process = subprocess.Popen([sys.executable, "-m", "blogimg", "serve", "--port", str(port)],
                                   cwd=data, env=server_environment(data, **extra), stdout=output,
                                   stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", process, log, data)
    try:
        _wait_until_healthy(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_healthy(server: Server) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"blogimg serve exited with {server.process.returncode}:\n{server.log_tail()}")
        with contextlib.suppress(OSError, urllib.error.URLError):
            with urllib.request.urlopen(server.url + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        time.sleep(0.2)
    raise AssertionError(f"blogimg serve did not answer /healthz within {SERVER_START_SECONDS:g} s:\n"
                         f"{server.log_tail()}")


# --- pages -----------------------------------------------------------------------------------

def sign_in(page: Page, server: Server, key: str, next_path: str = "/") -> None:
    """Sign in through the form, as a person does, and land on ``next_path``."""
    page.goto(f"{server.url}/sign-in?next={next_path}")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server.url}{next_path}")


def check_accessibility(page: Page, what: str) -> None:
    """Run axe-core on the page; fail on any serious or critical violation, listing each."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await window.axe.run(document, {resultTypes: ['violations']})")
    bad = [violation for violation in result["violations"] if violation["impact"] in ("serious", "critical")]
    if bad:
        lines = [f"{what}: {len(bad)} serious or critical accessibility violation(s):"]
        for violation in bad:
            targets = ", ".join(" ".join(map(str, node["target"])) for node in violation["nodes"][:5])
            lines.append(f"- {violation['id']} ({violation['impact']}): {violation['help']} — {targets}")
            lines += [f"    {node.get('failureSummary', '').strip()}" for node in violation["nodes"][:2]]
        raise AssertionError("\n".join(lines))


def assert_no_horizontal_overflow(page: Page, what: str) -> None:
    """Nothing wider than the window: no sideways scrolling at any width."""
    document_width, window_width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert document_width <= window_width, f"{what}: the page is {document_width} px wide in a {window_width} px window"


def set_theme(page: Page, theme: str) -> None:
    """Show the page in ``theme`` as the system's preference, the page's default choice."""
    page.emulate_media(color_scheme=theme, reduced_motion="reduce")
    page.evaluate("() => { try { localStorage.removeItem('blogimg-theme') } catch (e) {} "
                  "document.documentElement.removeAttribute('data-theme'); "
                  "document.dispatchEvent(new CustomEvent('blogimg:theme')) }")


def screenshot(page: Page, view: str, width: int, theme: str) -> Path:
    """``tests/browser/screenshots/<view>-<width>-<theme>.png``, the whole page."""
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{view}-{width}-{theme}.png"
    page.screenshot(path=str(path), full_page=True, animations="disabled")
    return path


def check_view(page: Page, view: str, path: str, ready: str) -> None:
    """``path`` at every width and theme: no sideways overflow, axe clean, a screenshot of each.

    ``ready`` is a selector that is there once the view has what it should show.
    """
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(path)
        page.locator(ready).first.wait_for()
        for theme in THEMES:
            set_theme(page, theme)
            page.wait_for_timeout(200)  # the charts redraw in the theme's colours
            what = f"{view} at {width} px, {theme}"
            assert_no_horizontal_overflow(page, what)
            screenshot(page, view, width, theme)
            check_accessibility(page, what)
