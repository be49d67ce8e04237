"""Every view updates live, without a reload: a batch enqueued through the API shows its progress on
the overview and ends with its thumbnails in the gallery; a hidden tab stops listening."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tests.browser.helpers import Server, screenshot

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page

#: Remembers, in the page, every batch the overview showed in progress and the progress it showed,
#: and marks the document so that a reload (a new document) would be noticed.
WATCH_OVERVIEW = """() => {
  window.sameDocument = true;
  window.batchesSeen = {};
  const record = () => document.querySelectorAll('[data-batch-id]').forEach((batch) => {
    const bar = batch.querySelector('progress');
    const seen = window.batchesSeen[batch.dataset.batchId] || [];
    seen.push([Number(bar.value), Number(bar.max)]);
    window.batchesSeen[batch.dataset.batchId] = seen;
  });
  new MutationObserver(record).observe(document.body, {childList: true, subtree: true});
  record();
}"""


def _navigations(page: Page) -> list[str]:
    navigated: list[str] = []
    page.on("framenavigated", lambda frame: navigated.append(frame.url) if frame == page.main_frame else None)
    return navigated


def test_a_batch_shows_its_progress_then_its_thumbnails_without_a_reload(
        server: Server, seeded: dict[str, Any], new_context: Callable[..., BrowserContext]) -> None:
    overview = new_context().new_page()
    gallery = new_context().new_page()  # a context of its own: each tab visible, as two windows
    overview.goto("/")
    gallery.goto("/gallery")
    for page in (overview, gallery):
        page.wait_for_function("() => window.blogimgLive && window.blogimgLive.state() === 'live'")
    overview.evaluate(WATCH_OVERVIEW)
    gallery.evaluate("() => { window.sameDocument = true }")
    navigations = _navigations(overview) + _navigations(gallery)

    prompts = [f"a paper boat on a pond, study {number}" for number in range(5)]
    batch = server.generate(*prompts)
    batch_id, image_ids = batch["batch_id"], batch["image_ids"]

    # The overview shows the batch at work, with a progress bar that is not yet full...
    overview.get_by_role("progressbar", name=f"Batch {batch_id}").wait_for(timeout=30_000)
    screenshot(overview, "overview-in-progress", 1280, "light")
    # ...and once every image is made, no longer: the batch leaves "In progress".
    server.wait_for_batch(batch_id)
    overview.locator(f'[data-batch-id="{batch_id}"]').wait_for(state="detached", timeout=30_000)
    seen = overview.evaluate(f"() => window.batchesSeen['{batch_id}']")
    assert all(maximum == len(image_ids) for _, maximum in seen), seen
    assert any(value < maximum for value, maximum in seen), f"the bar was never seen part-way: {seen}"
    assert [value for value, _ in seen] == sorted(value for value, _ in seen), f"progress went backwards: {seen}"

    # The gallery, open all along, ends with every image's thumbnail.
    for image_id in image_ids:
        thumbnail = gallery.locator(f'[data-image-id="{image_id}"] img')
        thumbnail.wait_for(timeout=30_000)
        assert thumbnail.get_attribute("src")
    assert gallery.evaluate("() => Promise.all([...document.querySelectorAll('.gallery-grid img')].map("
                            "(image) => image.decode().then(() => image.naturalWidth)))")[0] > 0

    for page in (overview, gallery):
        assert page.evaluate("() => window.sameDocument === true"), "the page was reloaded"
    assert navigations == [], f"the pages navigated: {navigations}"


HIDE = """(hidden) => {
  Object.defineProperty(document, 'hidden', {configurable: true, get: () => hidden});
  Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => hidden ? 'hidden' : 'visible'});
  document.dispatchEvent(new Event('visibilitychange'));
}"""


def test_a_hidden_tab_stops_listening_and_catches_up_when_shown(server: Server, seeded: dict[str, Any],
                                                                 page: Page) -> None:
    page.goto("/gallery")
    page.wait_for_function("() => window.blogimgLive.state() === 'live'")
    page.evaluate("() => { window.changes = []; document.body.addEventListener('blogimg:image', "
                  "(event) => window.changes.push(event.detail)) }")
    assert page.evaluate("() => window.blogimgLive.readyState()") == 1  # EventSource.OPEN

    page.evaluate(HIDE, True)
    assert page.evaluate("() => window.blogimgLive.readyState()") == 2  # EventSource.CLOSED
    assert page.evaluate("() => window.blogimgLive.state()") == "paused"
    batch = server.generate("a kite over a windy beach")
    server.wait_for_batch(batch["batch_id"])
    page.wait_for_timeout(1500)  # the hub would have delivered by now to a listening tab
    assert page.evaluate("() => window.changes.length") == 0, "a hidden tab still received events"

    page.evaluate(HIDE, False)
    page.wait_for_function("() => window.blogimgLive.readyState() === 1")
    # What changed while it was hidden arrives at once (resumed after the last event id) ...
    page.wait_for_function(
        f"() => window.changes.some((change) => change.image_id === {batch['image_ids'][0]} "
        "&& change.status === 'succeeded')")
    # ... and the gallery refreshed to show the new image.
    page.locator(f'[data-image-id="{batch["image_ids"][0]}"] img').wait_for()
