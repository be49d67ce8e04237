"""The overview, gallery, posts and webhooks views: what they show, filters kept in the URL, and — at 1280 and
390 px, light and dark — no sideways overflow, no serious accessibility violation, a screenshot each."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.helpers import FULL_KEY, Server, check_view, sign_in

if TYPE_CHECKING:
    from playwright.sync_api import Page


@pytest.mark.parametrize(("view", "path", "ready"), [
    ("overview", "/", ".provider"),
    ("gallery", "/gallery", ".gallery-grid img"),
    ("posts", "/posts", ".post-list .strip img"),
    ("webhooks", "/webhooks", "#deliveries-heading"),
])
def test_view_is_accessible_and_fits_every_width_in_both_themes(
        view: str, path: str, ready: str, server: Server, seeded: dict[str, Any], page: Page) -> None:
    check_view(page, view, path, ready)


def test_gallery_filters_are_kept_in_the_url(server: Server, seeded: dict[str, Any], page: Page) -> None:
    page.goto("/gallery")
    page.get_by_label("Status").select_option("succeeded")
    page.get_by_label("Text").fill("lighthouse")
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url("**/gallery?*q=lighthouse*")
    assert "status=succeeded" in page.url

    page.reload()
    assert page.get_by_label("Status").input_value() == "succeeded"
    assert page.get_by_label("Text").input_value() == "lighthouse"
    cards = page.locator(".gallery-grid [data-image-id]")
    assert cards.count() == 2  # the harbour post's lighthouse and the stormy sea's beam
    for alt in cards.locator("img").evaluate_all("(images) => images.map((image) => image.alt)"):
        assert "lighthouse" in alt.lower()
    page.get_by_role("link", name="Clear").click()
    page.wait_for_url("**/gallery")
    assert page.get_by_label("Status").input_value() == ""


def test_gallery_cards_link_to_their_image_and_show_a_placeholder_first(
        server: Server, seeded: dict[str, Any], page: Page) -> None:
    page.goto("/gallery?kind=cover&status=succeeded")
    card = page.locator(".gallery-grid [data-image-id]").first
    image_id = card.get_attribute("data-image-id")
    assert card.get_by_role("link").get_attribute("href") == f"/images/{image_id}"
    media = card.locator(".card__media")
    placeholder = media.evaluate("(element) => [getComputedStyle(element).backgroundImage, "
                                 "getComputedStyle(element).backgroundColor]")
    assert placeholder[0].startswith('url("data:image/') or placeholder[1] != "rgba(0, 0, 0, 0)", placeholder
    assert card.locator("img").get_attribute("loading") == "lazy"


def test_a_bad_filter_says_what_is_wrong(server: Server, seeded: dict[str, Any], page: Page) -> None:
    response = page.goto("/gallery?status=lost&date_from=yesterday")
    assert response is not None and response.status == 422
    alert = page.get_by_role("alert")
    assert "status: one of queued, running, succeeded, failed" in alert.inner_text()
    assert "YYYY-MM-DD" in alert.inner_text()


def test_posts_show_their_images_in_order_and_their_cost(server: Server, seeded: dict[str, Any], page: Page) -> None:
    page.goto("/posts")
    post = page.get_by_role("listitem").filter(has=page.get_by_role("heading", name="A walk round the harbour"))
    strip = post.get_by_role("list", name="Images of A walk round the harbour, in order")
    captions = strip.locator(".strip__caption").all_inner_texts()
    assert captions == ["1. cover", "2. inline", "3. inline"]
    assert "3 of 3 made" in post.inner_text()
    assert "$" in post.locator(".post__numbers").inner_text()


def test_the_theme_choice_is_kept_and_applied_before_the_first_paint(server: Server, seeded: dict[str, Any],
                                                                     page: Page) -> None:
    page.emulate_media(color_scheme="light")
    page.goto("/posts")
    assert page.evaluate("() => getComputedStyle(document.body).backgroundColor") == "rgb(245, 246, 248)"
    page.get_by_label("Colour theme").select_option("dark")
    assert page.evaluate("() => document.documentElement.dataset.theme") == "dark"
    page.reload()
    # Kept, and on <html> before the first paint: theme.js runs in <head>, before the stylesheet.
    assert page.get_by_label("Colour theme").input_value() == "dark"
    assert page.evaluate("() => getComputedStyle(document.body).backgroundColor") == "rgb(14, 17, 22)"
    page.get_by_label("Colour theme").select_option("system")
    assert page.evaluate("() => document.documentElement.dataset.theme") is None
    page.emulate_media(color_scheme="dark")
    assert page.evaluate("() => getComputedStyle(document.body).backgroundColor") == "rgb(14, 17, 22)"


def test_the_keyboard_reaches_the_content_first_and_every_control(server: Server, seeded: dict[str, Any],
                                                                  page: Page) -> None:
    page.goto("/gallery")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    assert skip.evaluate("(element) => element === document.activeElement")
    assert skip.is_visible()  # shown when focused
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.closest('main') !== null")
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid", "focus is not visible"


def test_sign_out_ends_the_session(browser: Any, server: Server, seeded: dict[str, Any]) -> None:
    context = browser.new_context(base_url=server.url)
    try:
        page = context.new_page()
        sign_in(page, server, FULL_KEY, "/posts")
        token = page.locator('meta[name="csrf-token"]').get_attribute("content")
        assert token and page.evaluate("() => JSON.parse(document.body.getAttribute('hx-headers'))")["X-CSRF-Token"] == token
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url("**/sign-in**")
        page.goto("/posts")
        page.wait_for_url("**/sign-in?next=/posts")
    finally:
        context.close()


def test_a_read_only_sign_in_sees_everything_and_no_control_that_changes_anything(
        server: Server, seeded: dict[str, Any], new_context: Any) -> None:
    page = new_context("read").new_page()
    for path in ("/", "/gallery", "/posts"):
        page.goto(path)
        assert page.get_by_text("Read-only").first.is_visible()
        forms = page.evaluate("() => [...document.forms].map((form) => [form.method, form.action])")
        assert all(method == "get" or action.endswith("/sign-out") for method, action in forms), forms
        assert page.locator("[hx-post], [hx-put], [hx-delete], [hx-patch]").count() == 0
