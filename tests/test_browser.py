"""The app in a real headless Chromium: ask a demo question (with markup that would fetch remote
images if rendered), see the streamed answer and the evidence, follow a citation to its evidence
item, log into the admin tab (a wrong
password first), see the domains table and upload a corpus file; the page requests nothing but
the app itself, and Gradio's upload route refuses the page until it is logged in.

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


# Markup in a question (and so possibly in the model's answer, which may echo it) that would make
# the browser fetch from elsewhere if anything rendered it.
REMOTE_MARKUP = " ![seen](https://example.invalid/md.png) <img src=\"https://example.invalid/tag.png\">"


def test_chat_and_admin_in_a_real_browser(page, app_url, tmp_path):
    elsewhere = []  # every request for anything not served by the app itself, refused
    page.route(lambda url: not url.startswith(app_url),
               lambda route: (elsewhere.append(route.request.url), route.abort()))
    page.goto(app_url)
    page.locator("#question textarea").fill("What reverses the effect of warfarin?" + REMOTE_MARKUP)
    page.locator("#ask").click()
    page.locator("#answer-header").get_by_text("Domain:").wait_for()
    header = page.locator("#answer-header").inner_text()
    assert "medicine" in header and "confidence" in header
    evidence = page.locator("#evidence")
    evidence.get_by_text("Cited in the answer").wait_for()
    assert "vitamin K" in evidence.inner_text() and "Other evidence the model was given" in evidence.inner_text()
    bot_text = page.locator("#conversation").inner_text()
    assert "What reverses the effect of warfarin?" in bot_text
    assert "vitamin k reverses" in bot_text.lower()  # the answer, opened by the graph fact it cites
    assert "example.invalid/md.png" in bot_text  # shown as the text it is
    citation = page.locator("#conversation a.citation").first
    citation.wait_for()
    # The citations of the answer are exactly the items listed as cited; the rest are folded away,
    # as many as their summary says.
    shown = page.evaluate("""() => {
        const items = [...document.querySelectorAll("#evidence [id^='evidence-']")];
        return {links: [...document.querySelectorAll("#conversation a.citation")].map((a) => a.getAttribute("href")),
                cited: items.filter((item) => !item.closest("details")).map((item) => "#" + item.id),
                folded: items.filter((item) => item.closest("details")).length};
    }""")
    assert shown["cited"] and sorted(set(shown["links"])) == sorted(shown["cited"])
    assert f"Other evidence the model was given ({shown['folded']})" in evidence.inner_text()
    # each [n] of the answer links to its item in the evidence panel: the click scrolls to it there
    number = citation.inner_text().strip("[]")
    target = citation.get_attribute("href").lstrip("#")
    assert target.endswith(f"-{number}")
    citation.click()
    item = page.locator(f"#evidence li:has(#{target})")
    item.wait_for()
    assert "evidence-target" in (item.get_attribute("class") or "")
    assert page.locator("#evidence .evidence-target").count() == 1  # only the followed item is highlighted
    assert f"[{number}]" in item.inner_text() and "vitamin K" in item.inner_text()
    assert item.evaluate("e => { const r = e.getBoundingClientRect(); return r.top >= 0 && r.bottom <= innerHeight; }")
    assert len(page.context.pages) == 1  # followed in the page, not opened elsewhere
    page.screenshot(path=str(tmp_path / "chat.png"), full_page=True)  # kept in pytest's tmp dir, to look at

    assert _upload_status(page) == 403  # Gradio's upload route, anonymous: refused
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
    # Logged in, the page holds the upload ticket's cookie: the corpus file picker uploads.
    assert _upload_status(page) == 200
    notes = tmp_path / "notes.md"
    notes.write_text("# Notes\n\nUploaded through the admin tab.\n")
    with page.expect_response(lambda response: "/gradio_api/upload" in response.url) as uploaded:
        page.locator("#corpus-files input[type=file]").set_input_files(str(notes))
    assert uploaded.value.status == 200
    page.locator("#corpus-files").get_by_text("notes").first.wait_for()  # Gradio shows stem and suffix apart
    assert "notes" in page.locator("#corpus-files").inner_text()
    page.screenshot(path=str(tmp_path / "admin.png"), full_page=True)
    assert elsewhere == []  # the page never asked anything but the app (no remote image, font or script)


def _upload_status(page) -> int:
    """What Gradio's upload route answers this page's own fetch (with whatever cookies it holds)."""
    return page.evaluate("""async () => {
        const form = new FormData();
        form.append("files", new Blob(["probe"]), "probe.md");
        return (await fetch("gradio_api/upload", {method: "POST", body: form})).status;
    }""")
