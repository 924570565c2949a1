"""Schemathesis, in process: every route's answers match the OpenAPI document it serves."""

from dataclasses import dataclass

import pytest
import schemathesis
from app import create_app
from app.openapi import DOCUMENTED_PREFIXES
from hypothesis import HealthCheck, settings
from schemathesis.checks import negative_data_rejection, not_a_server_error

# The document comes from the route that serves it; each test then sends its
# requests to its own app from the factory, which writes events to a temp file.
DOCUMENTED_APP = create_app({"TESTING": True})
schema = schemathesis.openapi.from_wsgi("/api/openapi.json", DOCUMENTED_APP)

# Every operation the app serves under the documented prefixes, as schemathesis labels them.
API_OPERATIONS = {
    f"{method} {rule.rule}"
    for rule in DOCUMENTED_APP.url_map.iter_rules()
    if rule.rule.startswith(DOCUMENTED_PREFIXES)
    for method in rule.methods - {"HEAD", "OPTIONS"}
}

# The same cases on every run, bounded so that all app states take seconds.
# One app serves all examples of a test on purpose (each example counts only
# the event lines it adds), hence the function-scoped fixture is expected.
BOUNDED = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    # too_slow times example generation, which a loaded machine slows down.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass(frozen=True)
class AppState:
    """A configuration to run the whole document against, and whether events reach the stream."""

    config: dict
    sink_open: bool = True


APP_STATES = {
    "serving": AppState({}),
    "token-required": AppState({"TELEMETRY_INGEST_TOKEN": "contract-test-token"}),
    "sink-closed": AppState({}, sink_open=False),
}


def test_schemathesis_covers_every_api_operation():
    # Schemathesis leaves out the route serving the document; tests/test_openapi.py validates that one.
    assert {result.ok().label for result in schema.get_all_operations()} == API_OPERATIONS - {"GET /api/openapi.json"}


@pytest.fixture(params=APP_STATES)
def api_app(request, make_app):
    state = APP_STATES[request.param]
    app = make_app(state.config)
    if not state.sink_open:
        # A sink that refuses events: the log route and health answer 503.
        with app.app_context():
            app.extensions["event_logger"].shutdown()
    return app, state


@schema.parametrize()
@BOUNDED
def test_answers_match_the_document(case, api_app, read_events):
    app, state = api_app
    before = len(read_events(app))
    response = case.call(app=app)
    emitted = read_events(app)[before:]

    # With the sink closed, 503 is the documented answer of the log route and
    # health; every other check still holds them to the document.
    excluded = [] if state.sink_open else [not_a_server_error]
    if case.path == "/api/telemetry/batch":
        # A batch whose events are not all valid is still a 202 for the valid ones, by
        # design: the document describes a well-formed batch, the reply each event's fate.
        excluded.append(negative_data_rejection)
    case.validate_response(response, excluded_checks=excluded, transport_kwargs={"app": app})
    assert response.status_code != 500
    accepted = case.method == "POST" and 200 <= response.status_code < 300
    if case.path == "/api/telemetry/batch":
        # One line per accepted event of the batch, in order, with the ids the reply gives.
        results = response.json()["results"] if accepted else []
        accepted_ids = [result["event_id"] for result in results if result["status"] == 202]
        assert [line["event_id"] for line in emitted] == (accepted_ids if state.sink_open else [])
        return
    assert len(emitted) == (1 if accepted and state.sink_open else 0)
    if emitted and case.path == "/api/telemetry/log":
        assert emitted[0]["event_id"] == response.json()["event_id"]
    elif emitted:
        assert emitted[0]["event_type"] == "ai_block_used"
        assert emitted[0]["payload"]["block_type"] == case.path.rsplit("/", 1)[1]
