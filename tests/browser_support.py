"""For the browser tests: finding Chromium, a page server on its own origin, waiting for event lines."""

import functools
import http.server
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

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
        browser_missing("the playwright package is not installed (pip install -r requirements.txt)")
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
