"""The app in a real headless Chromium: ask a demo question, see the streamed answer and the
evidence, log into the admin tab (a wrong password first) and see the domains table.

Needs Debian's ``chromium``; without it the test is skipped with the reason, unless
REQUIRE_BROWSER=1 (set by .ci/run), where a missing browser fails."""

from __future__ import annotations

import pytest

from conftest import ADMIN_PASSWORD, CHROMIUM, CHROMIUM_ARGS, skip_without_chromium

skip_without_chromium()


@pytest.fixture(scope="module")
def app_url(running_app):
    return running_app.url  # the session's one launched app (tests/conftest.py)


@pytest.fixture
def page(tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        page.set_default_timeout(120_000)
        yield page
        browser.close()


def test_chat_and_admin_in_a_real_browser(page, app_url, tmp_path):
    page.goto(app_url)
    page.locator("#question textarea").fill("What reverses the effect of warfarin?")
    page.locator("#ask").click()
    page.locator("#answer-header").get_by_text("Domain:").wait_for()
    header = page.locator("#answer-header").inner_text()
    assert "medicine" in header and "confidence" in header
    evidence = page.locator("#evidence")
    evidence.get_by_text("Graph facts").wait_for()
    assert "vitamin K" in evidence.inner_text() and "Passages" in evidence.inner_text()
    bot_text = page.locator("#conversation").inner_text()
    assert "What reverses the effect of warfarin?" in bot_text and len(bot_text) > 60
    page.screenshot(path=str(tmp_path / "chat.png"), full_page=True)

    page.get_by_role("tab", name="Admin").click()
    page.locator("#admin-user input, #admin-user textarea").first.fill("admin")
    page.locator("#admin-password input, #admin-password textarea").first.fill("not the password")
    page.locator("#admin-login").click()
    page.locator("#admin-state").get_by_text("wrong admin username or password").wait_for()
    assert not page.locator("#domains-table").is_visible()
    page.locator("#admin-password input, #admin-password textarea").first.fill(ADMIN_PASSWORD)
    page.locator("#admin-login").click()
    page.locator("#admin-state").get_by_text("Logged in.").wait_for()
    page.locator("#domains-table").get_by_text("finance").first.wait_for()
    page.locator("#admin-jobs").get_by_text("Graph: up").wait_for()  # the status panel, polled every 3 s
    table = page.locator("#domains-table").inner_text()
    assert all(domain in table for domain in ("medicine", "finance", "law"))
    page.screenshot(path=str(tmp_path / "admin.png"), full_page=True)
    assert (tmp_path / "chat.png").stat().st_size > 10_000 and (tmp_path / "admin.png").stat().st_size > 10_000
