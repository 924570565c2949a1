"""pytest fixtures for code that logs events: name this module in ``pytest_plugins`` (``"app.testing"``).

``recorded_events`` needs an ``app`` fixture (the app under test, from the
factory). Installed with requirements.txt, as pytest is.
"""

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from .analytics.sink import events_logger

# pytest's caplog attaches its handler to every logger that does not propagate
# and exists when a test phase starts; the events logger exists from here on,
# so caplog sees event records even of an app made inside the test.
events_logger()


@pytest.fixture
def recorded_events(app: Flask) -> Iterator[list[dict[str, Any]]]:
    """The events ``app`` writes during the test, each its line decoded, filled as they are written."""
    with app.extensions["event_logger"].record_events(app) as events:
        yield events
