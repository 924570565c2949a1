"""The flask CLI: routes, telemetry health, log, smoke and openapi."""

import json

import pytest
import yaml
from flask.cli import routes_command
from openapi_spec_validator import validate


def test_routes_lists_every_api_route(runner):
    result = runner.invoke(routes_command)

    assert result.exit_code == 0
    for rule in (
        "/api/telemetry/log",
        "/api/telemetry/health",
        "/api/ai/ask-question",
        "/api/ai/explain-like-10",
        "/api/ai/quiz",
        "/api/ai/diagram",
        "/api/openapi.json",
    ):
        assert rule in result.output


def test_health_prints_the_health_json(runner):
    result = runner.invoke(args=["telemetry", "health"])

    assert result.exit_code == 0
    health = json.loads(result.output)
    assert health["status"] == "healthy" and health["scope"] == "process"


def test_log_emits_the_event_and_prints_it(runner, events):
    result = runner.invoke(args=["telemetry", "log", "chapter_visit", "--payload", '{"chapter_id": "ch-9"}'])

    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    (line,) = events()
    assert printed == line
    assert line["payload"] == {"chapter_id": "ch-9"}


def test_log_without_payload_logs_an_empty_one(runner, events):
    result = runner.invoke(args=["telemetry", "log", "error_event"])

    assert result.exit_code == 0
    assert events()[0]["payload"] == {}


def test_log_on_the_default_stream_prints_the_line_once(make_app):
    app = make_app({"TELEMETRY_EVENTS_LOG": None})

    result = app.test_cli_runner().invoke(args=["telemetry", "log", "error_event", "--payload", '{"error_type": "X"}'])

    assert result.exit_code == 0
    (line,) = result.output.splitlines()
    assert json.loads(line)["payload"] == {"error_type": "X"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["telemetry", "log", "page_view"], "unknown event_type"),
        (["telemetry", "log", "chapter_visit", "--payload", "{oops"], "not valid JSON"),
        (["telemetry", "log", "chapter_visit", "--payload", "[1]"], "payload must be an object"),
        (["telemetry", "log", "chapter_visit", "--payload", '{"chapter_id": 5}'], "chapter_id"),
        (["telemetry", "log", "chapter_visit", "--payload", '{"x": NaN}'], "NaN"),
    ],
)
def test_log_rejects_bad_input_with_one_line(runner, events, args, message):
    result = runner.invoke(args=args)

    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit)
    (line,) = result.output.splitlines()
    assert line.startswith("Error:") and message in line
    assert "Traceback" not in result.output
    assert events() == []


def test_smoke_checks_every_route(runner, events):
    result = runner.invoke(args=["telemetry", "smoke"])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) >= 14 and all(line.startswith("ok") for line in lines)
    for path in (
        "/api/telemetry/log", "/api/telemetry/batch", "/api/telemetry/health", "/api/telemetry/client.js",
        "/api/ai/quiz", "/api/openapi.json", "/metrics",
    ):
        assert any(path in line for line in lines)
    assert {line["event_type"] for line in events()} == {"chapter_visit", "error_event", "ai_block_used"}


def test_smoke_fails_when_a_route_misbehaves(make_app):
    app = make_app()
    app.view_functions["ai_blocks.make_quiz"] = lambda: ("nope", 500)

    result = app.test_cli_runner().invoke(args=["telemetry", "smoke"])

    assert result.exit_code != 0
    assert any(line.startswith("FAIL") and "/api/ai/quiz" in line for line in result.output.splitlines())


@pytest.mark.parametrize("output", ["json", "yaml"])
def test_openapi_prints_a_valid_document(runner, output):
    result = runner.invoke(args=["telemetry", "openapi", "--format", output])

    assert result.exit_code == 0
    document = json.loads(result.output) if output == "json" else yaml.safe_load(result.output)
    validate(document)
    assert "/api/ai/quiz" in document["paths"]


def test_openapi_prefix_limits_the_paths(runner):
    result = runner.invoke(args=["telemetry", "openapi", "--prefix", "/api/telemetry"])

    assert set(json.loads(result.output)["paths"]) == {
        "/api/telemetry/log",
        "/api/telemetry/batch",
        "/api/telemetry/health",
        "/api/telemetry/client.js",
    }
