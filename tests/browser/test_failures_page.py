"""The failures view: groups by error code with what providers said, filters kept in the URL, retry one
and retry every image a filter matches (after a confirmation) — results update live, and persist —
and at 1280 and 390 px, light and dark, axe clean with a screenshot each."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tests.browser.helpers import Server, check_view

if TYPE_CHECKING:
    from playwright.sync_api import Page

LIVE_MILLISECONDS = 60_000  #: the worker makes the retried images, and the page hears of it


def test_failures_view_is_accessible_and_fits_every_width_in_both_themes(
        server: Server, seeded: dict[str, Any], make_failed: Callable[..., list[int]], page: Page) -> None:
    token = uuid.uuid4().hex[:6]
    make_failed(f"refuse a castle made of cheese {token}", f"refuse a submarine in a teacup {token}")
    make_failed(f"a lighthouse painted by a robot {token}", provider="google", kind="cover")
    check_view(page, "failures", f"/failures?q={token}", ".failure-group")


def test_groups_show_codes_providers_and_messages_and_filters_stay_in_the_url(
        server: Server, make_failed: Callable[..., list[int]], page: Page) -> None:
    token = uuid.uuid4().hex[:6]
    refused = make_failed(f"refuse a volcano of jelly {token}", f"refuse a tiger in a library {token}")
    invalid = make_failed(f"a bridge over fog {token}", provider="google", kind="cover")
    page.goto("/failures")
    page.get_by_label("Text").fill(token)
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url(f"**/failures?*q={token}*")
    groups = page.locator(".failure-group")
    groups.first.wait_for()
    assert groups.count() == 2
    first, second = groups.nth(0), groups.nth(1)
    assert "refused" in first.locator("h3").inner_text() and "2 images" in first.locator("h3").inner_text()
    assert "openai" in first.locator(".chips").inner_text()
    assert "rejected as a result of our safety system" in first.locator(".messages").inner_text()
    assert {int(link.removeprefix("#")) for link in first.locator(".failed-list__link").all_inner_texts()} == set(refused)
    assert "invalid" in second.locator("h3").inner_text()
    assert "none of the requested providers (google)" in second.locator(".messages").inner_text()
    assert second.get_by_text("None: it failed before any call").count() == 1
    assert "3 failed images match these filters" in page.locator(".failures-summary").inner_text()

    page.get_by_label("Kind").select_option("cover")
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url("**/failures?*kind=cover*")
    page.reload()  # the filters live in the URL: a reload shows the same view
    assert page.get_by_label("Text").input_value() == token and page.get_by_label("Kind").input_value() == "cover"
    assert page.locator(".failed-list__link").all_inner_texts() == [f"#{invalid[0]}"]
    # One code only, by its link; the way back to every code keeps the other filters.
    page.goto(f"/failures?q={token}")
    page.get_by_role("link", name="Only invalid").click()
    page.wait_for_url("**/failures?*code=invalid*")
    assert page.locator(".failure-group").count() == 1


def test_retry_one_by_click_and_the_row_leaves_live(server: Server, make_failed: Callable[..., list[int]],
                                                     page: Page) -> None:
    token = uuid.uuid4().hex[:6]
    first, second = make_failed(f"refuse a robot baking bread {token}", f"refuse an owl at a desk {token}")
    page.goto(f"/failures?q={token}")
    page.get_by_role("button", name=f"Retry image #{first}").click()
    page.get_by_role("status").filter(has_text=f"Image #{first} is queued again").wait_for()
    # No reload: the worker makes it (the fake refuses a prompt once) and the row leaves the group.
    page.locator(".failed-list__link", has_text=f"#{first}").wait_for(state="detached", timeout=LIVE_MILLISECONDS)
    assert page.locator(".failed-list__link").all_inner_texts() == [f"#{second}"]
    server_status = [server.api("GET", f"/api/images/{image_id}")["status"] for image_id in (first, second)]
    assert server_status[1] == "failed" and server_status[0] in ("queued", "running", "succeeded")
    page.reload()
    assert page.locator(".failed-list__link").all_inner_texts() == [f"#{second}"]


def test_retry_all_matching_asks_first_then_queues_exactly_the_filter(
        server: Server, make_failed: Callable[..., list[int]], page: Page) -> None:
    token = uuid.uuid4().hex[:6]
    matching = make_failed(f"refuse a whale in a bathtub {token}", f"refuse a kite made of toast {token}",
                           f"refuse a snail racing a car {token}")
    page.goto(f"/failures?q={token}")
    page.wait_for_function("() => window.blogimgLive && window.blogimgLive.state() === 'live'")
    page.get_by_text("Retry all 3 matching…").click()  # opens the confirmation; nothing is sent yet
    confirm = page.get_by_role("button", name="Yes, retry 3")
    confirm.wait_for()
    # A change elsewhere refreshes the page's regions, but not one whose confirmation is open:
    # it would close under the reader's pointer.
    page.evaluate("""() => { window.refreshed = new Promise(resolve =>
        document.body.addEventListener("blogimg:refresh", () => resolve(true), {once: true})); }""")
    other = make_failed(f"refuse a cactus wearing a hat {uuid.uuid4().hex[:6]}")  # outside the filter
    assert page.evaluate("() => window.refreshed")
    page.wait_for_timeout(500)  # what a swap, had one been asked for, would have needed
    assert confirm.is_visible()
    assert all(server.api("GET", f"/api/images/{i}")["status"] == "failed" for i in matching)
    confirm.click()
    page.get_by_role("status").filter(has_text="Queued 3 images again").wait_for()
    page.get_by_text("No failed image matches these filters.").wait_for(timeout=LIVE_MILLISECONDS)
    statuses = {image_id: server.api("GET", f"/api/images/{image_id}")["status"] for image_id in matching}
    assert set(statuses.values()) <= {"queued", "running", "succeeded"}, statuses
    assert server.api("GET", f"/api/images/{other[0]}")["status"] == "failed"  # not in the filter: untouched
    page.reload()
    assert page.get_by_text("No failed image matches these filters.").count() == 1
