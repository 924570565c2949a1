"""Fixtures: an app from the factory with test config, its client, CLI runner and events."""

import importlib.util
import logging
import os

import pytest
from app import create_app
from event_lines import parse_event_lines
from streams import UnreadPipe

# The test tools' plugins (tests/requirements.txt), named rather than
# autoloaded (setup.cfg says why); with requirements.txt alone, pytest runs without them.
_TEST_TOOL_PLUGINS = {
    "schemathesis": "schemathesis.pytest.plugin",
    "hypothesis": "_hypothesis_pytestplugin",
    "xdist": "xdist.plugin",
}
pytest_plugins = [
    # The fixtures the README offers to the app's developers (recorded_events, caplog for events).
    "app.testing",
    # The browser tests' fixtures: one Chromium and one page server per module.
    "browser_support",
    *(plugin for package, plugin in _TEST_TOOL_PLUGINS.items() if importlib.util.find_spec(package) is not None),
]


@pytest.hookimpl(wrapper=True)
def pytest_cmdline_main(config):
    """One xdist worker per core unless ``-n`` says otherwise: most tests spend their time in CPU.

    A file stays on one worker (``--dist loadfile``), so its module-scoped servers start once.
    """
    # A worker (workerinput) is handed numprocesses None: it must not start workers of its own.
    distributing = config.pluginmanager.has_plugin("xdist.plugin") and not hasattr(config, "workerinput")
    if distributing and config.option.numprocesses is None:
        config.option.numprocesses = "auto"
        if config.option.dist == "no":
            config.option.dist = "loadfile"
    return (yield)


@pytest.fixture(autouse=True)
def _hermetic_environment(monkeypatch):
    """FLASK_* variables of the machine running the tests must not change the app."""
    for name in list(os.environ):
        if name.startswith("FLASK_"):
            monkeypatch.delenv(name)


@pytest.fixture
def make_app(tmp_path):
    """Build apps with test config; each writes its events to its own file."""
    apps = []

    def build(config=None):
        events_log = tmp_path / f"events-{len(apps)}.jsonl"
        app = create_app({"TESTING": True, "TELEMETRY_EVENTS_LOG": str(events_log), **(config or {})})
        apps.append(app)
        return app

    yield build
    for app in apps:
        with app.app_context():
            app.extensions["event_logger"].shutdown()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def _read_events(app):
    with app.app_context():
        assert app.extensions["event_logger"].flush()
    with open(app.config["TELEMETRY_EVENTS_LOG"], encoding="ascii") as stream:
        return parse_event_lines(stream.read())


@pytest.fixture
def read_events():
    """Call with an app to get every event line it has written so far, parsed."""
    return _read_events


@pytest.fixture
def events(app):
    """Call to get the event lines ``app`` has emitted so far, parsed."""
    return lambda: _read_events(app)


class RecordingHandler(logging.Handler):
    """Collects the records that reach a logger."""

    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def events_logger_records():
    """Records seen by a handler on ``app.analytics.events``, the parent of every app's logger."""
    handler = RecordingHandler()
    parent = logging.getLogger("app.analytics.events")
    parent.addHandler(handler)
    yield handler.records
    parent.removeHandler(handler)


@pytest.fixture
def on_events_logger():
    """Attach handlers to ``app.analytics.events``; removed after the test."""
    attached = []

    def attach(handler):
        logging.getLogger("app.analytics.events").addHandler(handler)
        attached.append(handler)
        return handler

    yield attach
    for handler in attached:
        logging.getLogger("app.analytics.events").removeHandler(handler)


@pytest.fixture
def unread_pipe(tmp_path):
    """A named pipe nobody reads yet (see ``stalled_app``)."""
    pipe = UnreadPipe(tmp_path / "events.fifo")
    yield pipe
    pipe.close()


@pytest.fixture
def stalled_app(unread_pipe, make_app):
    """Build apps whose event stream is ``unread_pipe``, full: the next write would block.

    At teardown the pipe starts reading and the apps shut down, so their
    backlogs drain before the pipe closes.
    """
    built = []

    def build(config=None):
        app = make_app({"TELEMETRY_EVENTS_LOG": str(unread_pipe.path), **(config or {})})
        unread_pipe.fill()
        built.append(app)
        return app

    yield build
    unread_pipe.start_reading()
    for app in built:
        with app.app_context():
            app.extensions["event_logger"].shutdown()
