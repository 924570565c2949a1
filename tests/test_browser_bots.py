"""In headless Chromium: the tracker on a page that headless Chrome renders sends events the API ignores (S10)."""

import uuid

import pytest
from browser_support import HEADLESS_ARGS
from gunicorn_server import GunicornServer

pytestmark = pytest.mark.gunicorn

TRACKER_PAGE = """<!doctype html><title>a chapter</title>
<script defer src="{api}/api/telemetry/client.js" data-chapter-id="{chapter}"></script>"""


@pytest.fixture(scope="module")
def browser(chromium_path):
    """Headless Chromium with its own User-Agent, as a crawler that renders pages runs it."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=HEADLESS_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with GunicornServer(tmp_path_factory.mktemp("api"), workers=1) as server:
        yield server


def is_batch_post(response):
    return response.url.endswith("/api/telemetry/batch") and response.request.method == "POST"


def test_a_headless_chrome_pages_events_are_ignored(browser, site, api):
    chapter = f"ch-{uuid.uuid4().hex}"
    url = site.page(f"{chapter}.html", TRACKER_PAGE.format(api=api.url, chapter=chapter))
    context = browser.new_context()
    try:
        page = context.new_page()
        with page.expect_response(is_batch_post) as answered:
            page.goto(url)
            page.wait_for_function("() => window.TextbookTelemetry")
            page.evaluate("() => window.TextbookTelemetry.flush()")
        user_agent = page.evaluate("() => navigator.userAgent")
        response = answered.value
        status, reply = response.status, response.json()
    finally:
        context.close()

    assert "HeadlessChrome" in user_agent
    assert (status, reply) == (200, {"status": "ignored", "reason": "bot", "ignored": 1})
    # The answer comes after the verdict: an event that was written would be on stdout by now.
    assert not [line for line in api.event_lines() if line["payload"].get("chapter_id") == chapter]
