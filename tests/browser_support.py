"""For the browser tests: finding Chromium, a page server on its own origin, waiting for event lines.

The fixtures here (``chromium_path``, ``site``, and for the tracker's tests
``browser``, ``api``, ``context``, ``page``) are imported by each browser test
module, which gets its own instances: one Chromium and one page server per module.
"""

import functools
import http.server
import json
import os
import shutil
import threading
import time
import uuid
from pathlib import Path

import pytest
from gunicorn_server import GunicornServer

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # judged by the chromium_path fixture: a skip, or a failure on CI
    sync_playwright = None

INSTALL_HINT = "apt-get install -y chromium"
# Headless Chromium on a loopback-only machine: no sandbox (CI runs as root),
# and nothing that phones home. Its own User-Agent names HeadlessChrome, which
# the API ignores as an automated browser (TELEMETRY_IGNORE_BOTS).
HEADLESS_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# What a reader's desktop Chrome sends: the pages of the browser tests stand for readers.
READER_USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36"
)
CHROMIUM_ARGS = [*HEADLESS_ARGS, f"--user-agent={READER_USER_AGENT}"]


def chromium_executable():
    """The system Chromium: $CHROMIUM_PATH, else ``chromium`` on PATH; None when there is none."""
    override = os.environ.get("CHROMIUM_PATH")
    if override:
        return override if Path(override).is_file() else None
    return shutil.which("chromium")


def browser_missing(reason):
    """Fail on CI, where the browser tests must run; skip elsewhere, saying how to install."""
    message = f"{reason}; install it with `{INSTALL_HINT}` (or set CHROMIUM_PATH)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but the browser tests cannot run: {message}", pytrace=False)
    pytest.skip(message)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


class PageServer:
    """Serves the files of ``root`` on 127.0.0.1:<free port>: a page origin other than the API's."""

    def __init__(self, root):
        self.root = Path(root)
        handler = functools.partial(_QuietHandler, directory=str(self.root))
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="page-server", daemon=True)

    @property
    def origin(self):
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def page(self, name, html):
        """Write a page and return its URL."""
        (self.root / name).write_text(html, encoding="utf-8")
        return f"{self.origin}/{name}"

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@pytest.fixture(scope="module")
def chromium_path():
    """The Chromium to drive, checked before any server starts: without a browser there is nothing to run."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        browser_missing("the playwright package is not installed (pip install -r tests/requirements.txt)")
    executable = chromium_executable()
    if executable is None:
        browser_missing("no Chromium executable was found")
    return executable


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The origin the textbook's pages come from (import the fixture into a test module to use it)."""
    server = PageServer(tmp_path_factory.mktemp("site")).start()
    yield server
    server.stop()


def wait_for_lines(server, predicate, count=1, timeout=20.0, pause=time.sleep):
    """The event lines on ``server``'s stdout that satisfy ``predicate``, once there are ``count`` of them.

    Playwright's sync API runs route handlers only inside its own calls: a
    test that routes requests passes ``pause`` as one, e.g. ``page.wait_for_timeout``.
    """
    deadline = time.monotonic() + timeout
    while True:
        lines = [line for line in server.event_lines(while_running=True) if predicate(line)]
        if len(lines) >= count or time.monotonic() > deadline:
            break
        pause(0.05)
    assert len(lines) >= count, f"expected {count} matching line(s) within {timeout} s, found {lines}"
    return lines


def marked(marker):
    """A predicate: the event line carries ``marker`` somewhere in its payload."""
    return lambda line: marker in repr(line["payload"])


BLANK = "<!doctype html><title>blank</title>"

TRACKER_PAGE = """<!doctype html><title>a chapter</title>
{head}<script defer src="{api}/api/telemetry/client.js"{attributes}></script>"""

# What the tracker keeps in the page origin's localStorage, oldest first.
STORED_EVENTS = """() => Object.keys(localStorage)
  .filter((key) => key.startsWith("TextbookTelemetry:event:")).sort()
  .map((key) => JSON.parse(localStorage.getItem(key).slice(localStorage.getItem(key).indexOf(" ") + 1)))"""


def new_marker():
    return uuid.uuid4().hex


def tracker_page(site, api, head="", **attributes):
    """A page that includes the tracker with ``data-*`` attributes (chapter_id="ch-3" -> data-chapter-id).

    ``True`` makes a bare attribute (require_consent=True -> data-require-consent);
    ``head`` is HTML put before the script tag.
    """
    html = TRACKER_PAGE.format(
        head=head,
        api=api.url,
        attributes="".join(
            f" data-{name.replace('_', '-')}" + ("" if value is True else f'="{value}"')
            for name, value in attributes.items()
        ),
    )
    return site.page(f"tracker-{new_marker()}.html", html)


def open_tracker(page, url):
    page.goto(url)
    page.wait_for_function("() => window.TextbookTelemetry && window.TextbookTelemetry.isOptedOut")


def routes_answered(page):
    """A pause for ``wait_for_lines`` during which ``page``'s route handlers run."""
    return lambda seconds: page.wait_for_timeout(seconds * 1000)


def batch_event_ids(requests):
    """The event_ids of every event in the given /batch requests, in the order they were sent."""
    return [event.get("event_id") for request in requests for event in json.loads(request.post_data)["events"]]


def new_context(browser, **options):
    """A browser context whose pages present themselves as a reader's Chrome (``READER_USER_AGENT``)."""
    return browser.new_context(user_agent=READER_USER_AGENT, **options)


def launch_chromium(playwright, executable, bfcache=False):
    """Headless Chromium; ``bfcache`` keeps the back/forward cache that Playwright turns off by default."""
    return playwright.chromium.launch(
        executable_path=executable,
        args=CHROMIUM_ARGS,
        ignore_default_args=["--disable-back-forward-cache"] if bfcache else None,
    )


@pytest.fixture(scope="module")
def browser(chromium_path):
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright, chromium_path)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """The API with one worker: the stream holds events in the order they arrived, so once a
    later event's line is there, an earlier event that was sent would be there too."""
    with GunicornServer(tmp_path_factory.mktemp("api"), workers=1) as server:
        yield server


@pytest.fixture
def context(browser):
    """A fresh profile (its own localStorage) whose pages present an ordinary Chrome user agent."""
    context = new_context(browser)
    yield context
    context.close()


@pytest.fixture
def page(context):
    return context.new_page()
