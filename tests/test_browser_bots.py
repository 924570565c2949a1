"""In headless Chromium: the tracker on a page that headless Chrome renders sends events the API ignores (S10)."""

import uuid

import pytest

from browser_support import (
    HEADLESS_ARGS,
    PageServer,
    browser_missing,
    chromium_executable,
    wait_for_lines,
)
from gunicorn_server import GunicornServer

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # judged by the chromium_path fixture: a skip, or a failure on CI
    sync_playwright = None

pytestmark = pytest.mark.gunicorn

TRACKER_PAGE = """<!doctype html><title>a chapter</title>
<script defer src="{api}/api/telemetry/client.js" data-chapter-id="{chapter}"></script>"""


@pytest.fixture(scope="module")
def chromium_path():
    if sync_playwright is None:
        browser_missing("the playwright package is not installed (pip install -r requirements.txt)")
    executable = chromium_executable()
    if executable is None:
        browser_missing("no Chromium executable was found")
    return executable


@pytest.fixture(scope="module")
def browser(chromium_path):
    """Headless Chromium with its own User-Agent, as a crawler that renders pages runs it."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=HEADLESS_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with GunicornServer(tmp_path_factory.mktemp("api"), workers=1) as server:
        yield server


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    server = PageServer(tmp_path_factory.mktemp("site")).start()
    yield server
    server.stop()


def visit_chapter(browser, site, api, user_agent=None):
    """Open a tracker page in a fresh context; the tracker's answer to its chapter_visit, and the chapter."""
    chapter = f"ch-{uuid.uuid4().hex}"
    url = site.page(f"{chapter}.html", TRACKER_PAGE.format(api=api.url, chapter=chapter))
    context = browser.new_context(**({"user_agent": user_agent} if user_agent else {}))
    try:
        page = context.new_page()
        batch_answer = lambda response: response.url.endswith("/api/telemetry/batch") and (
            response.request.method == "POST"
        )
        with page.expect_response(batch_answer) as answered:
            page.goto(url)
            page.wait_for_function("() => window.TextbookTelemetry")
            page.evaluate("() => window.TextbookTelemetry.flush()")
        response = answered.value
        return page.evaluate("() => navigator.userAgent"), response.status, response.json(), chapter
    finally:
        context.close()


def test_a_headless_chrome_pages_events_are_ignored(browser, site, api):
    user_agent, status, reply, chapter = visit_chapter(browser, site, api)

    assert "HeadlessChrome" in user_agent
    assert (status, reply) == (200, {"status": "ignored", "reason": "bot", "ignored": 1})
    # The answer comes after the decision: a written event would be on stdout by now.
    assert not [line for line in api.event_lines() if line["payload"].get("chapter_id") == chapter]

