"""The image view: edits and retries that persist, a read-only sign-in that can change nothing, forged
cross-site posts refused, and — at 1280 and 390 px, light and dark — axe clean with a screenshot each."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tests.browser.helpers import Server, check_view
from tests.fakes.server import LoopbackServer, Received, Reply

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page

LIVE_SECONDS = 60_000  #: milliseconds to wait for the worker and the live update


def succeeded_image(server: Server, seeded: dict[str, Any]) -> int:
    image_id: int = seeded["batch"]["image_ids"][0]
    assert server.api("GET", f"/api/images/{image_id}")["status"] == "succeeded"
    return image_id


def test_image_view_is_accessible_and_fits_every_width_in_both_themes(
        server: Server, seeded: dict[str, Any], page: Page) -> None:
    image_id = succeeded_image(server, seeded)
    check_view(page, "image", f"/images/{image_id}", ".focal__image")


def test_a_failed_image_view_is_accessible_and_fits(server: Server, make_failed: Callable[..., list[int]],
                                                    page: Page) -> None:
    [image_id] = make_failed(f"refuse a knight on a bicycle {uuid.uuid4().hex[:8]}")
    check_view(page, "image-failed", f"/images/{image_id}", ".timeline__item")


def test_the_view_shows_variants_prompts_timeline_and_ready_markup(
        server: Server, seeded: dict[str, Any], page: Page) -> None:
    image_id = succeeded_image(server, seeded)
    image = server.api("GET", f"/api/images/{image_id}")
    page.goto(f"/images/{image_id}")
    rows = page.locator(".data-table tbody tr")
    assert rows.count() == len(image["variants"]) > 0
    assert "%" in rows.first.inner_text()  # the saving against the original
    assert image["prompt"] in page.locator(".facts").first.inner_text()
    assert page.locator(".timeline__item .outcome--ok").count() == 1  # the card made it in one call
    markup = page.get_by_label("Picture markup").input_value()
    assert markup.startswith("<picture>") and 'type="image/avif"' in markup and 'loading="lazy"' in markup
    assert re.search(r'width="\d+" height="\d+"', markup)

    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.get_by_role("button", name="Copy markup").click()
    status = page.locator("#copy-status")
    status.filter(has_text="Copied").wait_for()
    assert page.evaluate("() => navigator.clipboard.readText()") == markup


def test_alt_text_rating_and_focal_point_edits_persist(server: Server, seeded: dict[str, Any], page: Page) -> None:
    image_id = seeded["batch"]["image_ids"][1]
    before = server.api("GET", f"/api/images/{image_id}")
    page.goto(f"/images/{image_id}")

    token = uuid.uuid4().hex[:6]
    alt = f"A misty pine forest <at> sunrise & \"fog\" {token}"
    page.get_by_label("Alt text", exact=True).fill(alt)
    page.get_by_role("button", name="Save alt text").click()
    page.get_by_role("status").filter(has_text="Alt text saved").wait_for()
    # The region redraws after the save: the ready markup carries the new alt text.
    page.wait_for_function("(token) => document.querySelector('#picture-markup').value.includes(token)", arg=token)

    page.get_by_label("4 of 5").check()
    page.get_by_role("status").filter(has_text="Rating saved").wait_for()

    # A click a quarter across and three quarters down the picture.
    picture = page.locator(".focal__image")
    box = picture.bounding_box()
    assert box is not None
    picture.click(position={"x": box["width"] * 0.25, "y": box["height"] * 0.75})  # scrolled into view first
    page.get_by_role("status").filter(has_text="Focal point saved").wait_for()

    after = server.api("GET", f"/api/images/{image_id}")
    assert after["alt_text"] == alt and after["rating"] == 4
    assert abs(after["focal_point"]["x"] - 0.25) <= 0.02 and abs(after["focal_point"]["y"] - 0.75) <= 0.02
    assert after["thumbnail_url"] != before["thumbnail_url"]  # cropped again around the point

    page.reload()
    assert page.get_by_label("Alt text", exact=True).input_value() == alt
    assert page.get_by_label("4 of 5").is_checked()
    marker = page.locator(".focal__marker").evaluate("(m) => [m.style.left, m.style.top]")
    assert marker == ["25%", "75%"]  # as the browser reads the style back
    assert page.locator(".thumbnail img").get_attribute("src") == after["thumbnail_url"]
    markup = page.get_by_label("Picture markup").input_value()
    assert 'alt="A misty pine forest &lt;at&gt; sunrise &amp; &quot;fog&quot;' in markup


def test_the_focal_point_can_be_set_with_the_keyboard(server: Server, seeded: dict[str, Any], page: Page) -> None:
    image_id = seeded["batch"]["image_ids"][2]
    page.goto(f"/images/{image_id}")
    page.get_by_label("Across (0–1)").fill("0.9")
    page.get_by_label("Down (0–1)").fill("0.1")
    page.get_by_label("Down (0–1)").press("Enter")
    page.get_by_role("status").filter(has_text="Focal point saved").wait_for()
    focal = server.api("GET", f"/api/images/{image_id}")["focal_point"]
    assert (focal["x"], focal["y"]) == (0.9, 0.1)


def test_retry_by_click_makes_the_image_and_the_page_shows_it_live(
        server: Server, make_failed: Callable[..., list[int]], page: Page) -> None:
    [image_id] = make_failed(f"refuse a dragon reading a map {uuid.uuid4().hex[:8]}")
    page.goto(f"/images/{image_id}")
    assert page.locator(".timeline__item .outcome--refused").count() == 1
    page.get_by_role("button", name="Retry this image").click()
    page.get_by_role("status").filter(has_text="queued again").wait_for()
    # No reload: the live region follows the image to the end (the fake refuses a prompt only once).
    page.locator("#image-live[data-status='succeeded']").wait_for(timeout=LIVE_SECONDS)
    page.locator(".focal__image").wait_for()
    assert page.locator(".timeline__item .outcome--ok").count() == 1
    assert page.get_by_role("button", name="Retry this image").count() == 0
    assert server.api("GET", f"/api/images/{image_id}")["status"] == "succeeded"


def changing_controls(page: Page) -> list[str]:
    """Every control on the page that could change something, described (none is wanted)."""
    described: list[str] = page.evaluate("""() => {
        const found = [];
        for (const element of document.querySelectorAll('[hx-post], [hx-put], [hx-delete], [hx-patch], textarea:not([readonly]), input[type=radio], input[type=number]')) {
            if (!element.closest('form[role=search]')) found.push(element.outerHTML.slice(0, 120));  // filters only read
        }
        for (const form of document.querySelectorAll('form[method=post]')) {
            if (form.getAttribute('action') !== '/sign-out') found.push(form.outerHTML.slice(0, 120));
        }
        for (const button of document.querySelectorAll('button, summary')) {
            if (/retry|save|set focal|delete/i.test(button.textContent)) found.push(button.outerHTML.slice(0, 120));
        }
        return found;
    }""")
    return described


def test_a_read_only_sign_in_sees_the_image_and_failures_but_no_control_that_changes_anything(
        server: Server, seeded: dict[str, Any], make_failed: Callable[..., list[int]],
        new_context: Callable[..., BrowserContext]) -> None:
    token = uuid.uuid4().hex[:8]
    [failed_id] = make_failed(f"refuse a pirate ship {token}")
    image_id = seeded["batch"]["image_ids"][0]
    page = new_context("read").new_page()
    for path in (f"/images/{image_id}", f"/images/{failed_id}", f"/failures?q={token}", "/failures"):
        page.goto(path)
        page.locator("main h1").wait_for()
        assert page.locator(".badge", has_text="Read-only").count() == 1
        assert changing_controls(page) == [], path
    page.goto(f"/images/{image_id}")
    assert page.locator(".focal__image").count() == 1 and page.locator(".data-table").count() == 1
    assert page.get_by_text("Alt text").count() >= 1 and page.locator("#alt-text").count() == 0
    page.goto(f"/failures?q={token}")
    assert page.locator(".failure-group").count() == 1 and page.locator(".failed-list__item").count() == 1
    # The API refuses the read-only session's change even when sent by hand with the CSRF token.
    answer = page.evaluate("""async (id) => {
        const token = document.querySelector('meta[name=csrf-token]').content;
        const response = await fetch('/api/images/' + id + '/retry', {method: 'POST', headers: {'X-CSRF-Token': token}});
        return response.status;
    }""", failed_id)
    assert answer == 403
    assert server.api("GET", f"/api/images/{failed_id}")["status"] == "failed"


def test_a_forged_cross_site_form_post_is_refused_and_changes_nothing(
        server: Server, make_failed: Callable[..., list[int]], page: Page) -> None:
    [image_id] = make_failed(f"refuse a stolen crown {uuid.uuid4().hex[:8]}")
    forms = f"""<!doctype html><html lang="en"><head><title>Win a prize</title></head><body>
        <form id="one" method="post" action="{server.url}/api/images/{image_id}/retry"><button>Win</button></form>
        <form id="all" method="post" enctype="text/plain" action="{server.url}/api/images/retry">
          <input name='{{"q": "stolen crown", "x": "' value='"}}'><button>Win all</button></form>
        </body></html>"""

    def attacker(request: Received) -> Reply:
        return Reply(200, forms.encode(), {"Content-Type": "text/html; charset=utf-8"})

    # Another origin on this machine (another port): the browser sends the session cookie along
    # (same site), so only the CSRF defence stands between the form and the change.
    with LoopbackServer(attacker) as evil:
        for form in ("one", "all"):
            page.goto(evil.url)
            with page.expect_response(lambda response: "/api/images/" in response.url) as answered:
                page.locator(f"#{form} button").click()
            response = answered.value
            assert response.status in (401, 403), (form, response.status, response.text())
    assert server.api("GET", f"/api/images/{image_id}")["status"] == "failed"
