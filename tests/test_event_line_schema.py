"""The event line's JSON Schema (SPEC S15): generated from the payload schemas, committed, served, and enforced."""

import json
import uuid

import pytest
from event_lines import SCHEMA_PATH, parse_event_line
from gunicorn_server import REPO_ROOT
from jsonschema import Draft202012Validator

SCHEMA_COMMAND = ["telemetry", "event-schema"]


def test_committed_schema_is_what_the_code_generates(runner):
    result = runner.invoke(args=SCHEMA_COMMAND)

    assert result.exit_code == 0, result.output
    committed = SCHEMA_PATH.relative_to(REPO_ROOT)
    assert SCHEMA_PATH.read_text(encoding="utf-8") == result.output, (
        f"{committed} is stale; regenerate it from the repository root with\n"
        f"  flask --app wsgi {' '.join(SCHEMA_COMMAND)} > {committed}\n"
        "and raise the version in backend/app/analytics/event_line_schema.py by the rule written there"
    )


def test_schema_is_valid_draft_2020_12_with_a_version_in_its_id():
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))

    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].startswith("urn:textbook-telemetry:event-line:")
    major, minor = schema["$id"].rsplit(":", 1)[1].split(".")
    assert major.isdigit() and minor.isdigit()
    assert set(schema["$defs"]) == {"ai_block_used", "chapter_visit", "error_event"}


def test_the_api_serves_the_committed_schema(client):
    response = client.get("/api/telemetry/event-schema.json")

    assert response.status_code == 200
    assert response.content_type == "application/schema+json"
    assert response.get_data(as_text=True) == SCHEMA_PATH.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("event_type", "payload"),
    [
        (
            "ai_block_used",
            {"user_id": "u", "chapter_id": "c", "section_id": "s", "block_type": "quiz", "query": None, "x": [1]},
        ),
        ("chapter_visit", {"chapter_id": "c", "timestamp": "2026-12-07T01:00:00+01:00"}),
        ("error_event", {"error_type": "E", "error_message": "m", "nested": {"a": 1}}),
        ("error_event", None),
    ],
)
def test_every_event_type_written_validates(client, events, event_type, payload):
    event_id = str(uuid.uuid4())

    response = client.post(
        "/api/telemetry/log", json={"event_type": event_type, "payload": payload, "event_id": event_id}
    )

    assert response.status_code == 202
    (line,) = events()  # the fixture holds the line to the schema
    assert line["event_id"] == event_id


def test_a_truncated_line_validates(make_app, read_events):
    app = make_app({"TELEMETRY_MAX_EVENT_BYTES": 1024})
    with app.app_context():
        app.extensions["event_logger"].log("error_event", {"error_message": "x" * 5000})

    (line,) = read_events(app)
    assert line["truncated"] is True


def line_with(**members):
    """A valid chapter_visit line, with ``members`` changed (None removes one)."""
    line = {"event_id": str(uuid.uuid4()), "event_type": "chapter_visit", "timestamp": "2026-12-07T00:00:00Z"}
    line["payload"] = {}
    line.update(members)
    return {name: value for name, value in line.items() if value is not None}


@pytest.mark.parametrize(
    "line",
    [
        line_with(event_id=None),
        line_with(event_type="page_view"),
        line_with(event_type="ai_block_used", payload={"block_type": "poem"}),
        line_with(event_id="not-a-uuid"),
        line_with(timestamp="yesterday"),
        line_with(truncated=False),
        line_with(extra=1),
    ],
    ids=["no-id", "unknown-type", "bad-block-type", "bad-id", "bad-timestamp", "truncated-false", "extra-member"],
)
def test_lines_that_break_the_contract_are_refused(line):
    parse_event_line(json.dumps(line_with()))

    with pytest.raises(AssertionError, match="breaks event-line.schema.json"):
        parse_event_line(json.dumps(line))
