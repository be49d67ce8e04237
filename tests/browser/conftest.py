"""Fixtures for the status page in a real browser: one ``blogimg serve``, Debian's Chromium, sign-ins.

Playwright drives ``/usr/bin/chromium`` (``executable_path``): no browser is ever downloaded.
Without Chromium or Playwright the tests are skipped with the reason — unless
``BLOGIMG_TEST_REQUIRE_BROWSER=1`` (CI), where that is a failure. Helpers that test modules
import live in tests/browser/helpers.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.helpers import (
    CHROMIUM,
    FULL_KEY,
    READ_KEY,
    Server,
    browser_missing,
    running_server,
    sign_in,
)
from tests.fakes import openai_api
from tests.fakes.openai_api import FakeOpenAI

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Playwright


@pytest.fixture(scope="session")
def playwright_instance() -> Iterator[Playwright]:
    reason = browser_missing()
    if reason is not None:
        if os.environ.get("BLOGIMG_TEST_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser tests are required here (BLOGIMG_TEST_REQUIRE_BROWSER=1), but {reason}")
        pytest.skip(f"browser tests need Chromium and Playwright: {reason}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def browser(playwright_instance: Playwright) -> Iterator[Browser]:
    launched = playwright_instance.chromium.launch(executable_path=str(CHROMIUM), headless=True)
    yield launched
    launched.close()


@pytest.fixture(scope="session")
def fake_openai(playwright_instance: Playwright) -> Iterator[FakeOpenAI]:
    """OpenAI's Images API on loopback, so that images can fail for real: a prompt with "refuse" in it
    is refused (moderation, HTTP 400) the first time it is asked for and made after that, so a retry
    succeeds. Only requests that choose ``openai`` reach it: the server tries ``card`` first."""
    refused: set[str] = set()

    def script(prompt: str, number: int) -> str:
        if "refuse" in prompt and prompt not in refused:
            refused.add(prompt)
            return "refused"
        return "ok"

    with FakeOpenAI(script) as fake:
        yield fake


@pytest.fixture(scope="session")
def server(playwright_instance: Playwright, fake_openai: FakeOpenAI,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for every browser test (started after the browser check: no browser, no server)."""
    with running_server(tmp_path_factory.mktemp("serve"), BLOGIMG_PROVIDERS="card,openai",
                        OPENAI_API_KEY=openai_api.API_KEY, OPENAI_BASE_URL=fake_openai.base_url) as running:
        yield running


@pytest.fixture(scope="session")
def seeded(server: Server) -> dict[str, Any]:
    """Finished images in two posts, so that every view has something to show."""
    post = server.api("POST", "/api/posts", {
        "slug": "harbour-walk", "enqueue": True,
        "markdown": "---\ntitle: A walk round the harbour\n---\n\n# A walk round the harbour\n\n"
                    "<!-- image: a red lighthouse on a rocky harbour wall at dawn -->\n\nThe walk begins.\n\n"
                    "<!-- image: fishing boats moored in a small harbour, watercolour -->\n"})
    batch = server.generate("a bowl of green tea on a wooden kitchen table", "a misty pine forest at sunrise",
                            "a lighthouse beam over a stormy sea at night")
    for batch_id in (post.get("batch_id"), batch["batch_id"]):
        if batch_id is not None:
            server.wait_for_batch(batch_id)
    return {"post": post, "batch": batch}


@pytest.fixture(scope="session")
def signed_in_state(browser: Browser, server: Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A signed-in browser state per role ("full", "read"), made once each through the sign-in form."""
    states = {}
    for role, key in (("full", FULL_KEY), ("read", READ_KEY)):
        context = browser.new_context()
        sign_in(context.new_page(), server, key)
        states[role] = tmp_path_factory.mktemp(f"state-{role}") / "state.json"
        context.storage_state(path=states[role])
        context.close()
    return states


@pytest.fixture
def new_context(browser: Browser, server: Server,
                signed_in_state: dict[str, Path]) -> Iterator[Callable[..., BrowserContext]]:
    """``new_context(role="full", **options)``: a fresh browser context, signed in with that role's key."""
    contexts: list[BrowserContext] = []

    def make(role: str = "full", **options: Any) -> BrowserContext:
        options.setdefault("viewport", {"width": 1280, "height": 900})
        context = browser.new_context(base_url=server.url, storage_state=signed_in_state[role], **options)
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_context: Callable[..., BrowserContext]) -> Page:
    """A page signed in with the full key, 1280 px wide."""
    return new_context().new_page()


@pytest.fixture
def make_failed(server: Server) -> Callable[..., list[int]]:
    """``make_failed(*prompts, provider="openai")``: images that fail for real, waited for; their ids.

    With ``openai`` (the loopback fake) a prompt with "refuse" in it is refused once, so a retry makes
    it; with ``google``, which this server does not run, the image fails at once as ``invalid``.
    """

    def make(*prompts: str, provider: str = "openai", kind: str = "inline") -> list[int]:
        batch = server.api("POST", "/api/images/generate", {
            "prompts": [{"prompt": prompt, "kind": kind} for prompt in prompts], "options": {"providers": [provider]}})
        server.wait_for_batch(batch["batch_id"])
        ids: list[int] = batch["image_ids"]
        for image_id in ids:
            assert server.api("GET", f"/api/images/{image_id}")["status"] == "failed", server.log_tail()
        return ids

    return make
