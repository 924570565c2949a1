"""Fixtures: an app from the factory with test config, its client, CLI runner and events."""

import json
import logging
import os

import pytest

from app import create_app
from handlers import GatedHandler


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
        return [json.loads(line) for line in stream.read().splitlines()]


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
def on_events_logger(make_app):
    """Attach handlers to ``app.analytics.events``; removed (gates opened) before the apps shut down."""
    attached = []

    def attach(handler):
        logging.getLogger("app.analytics.events").addHandler(handler)
        attached.append(handler)
        return handler

    yield attach
    for handler in attached:
        if isinstance(handler, GatedHandler):
            handler.gate.set()
        logging.getLogger("app.analytics.events").removeHandler(handler)


@pytest.fixture
def stalled_stream(on_events_logger):
    """A stream that takes nothing until the returned gate is set."""
    return on_events_logger(GatedHandler()).gate
