"""The flask CLI: routes, telemetry health, log, smoke and openapi."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from app import create_app
from app.analytics.smoke import check_event_lines, run_smoke_checks
from event_lines import parse_event_line
from flask.cli import routes_command
from gunicorn_server import REPO_ROOT
from openapi_spec_validator import validate
from prometheus_client import REGISTRY


def test_routes_lists_every_api_route(app, runner):
    result = runner.invoke(routes_command)

    assert result.exit_code == 0
    listed = {line.split()[-1] for line in result.output.splitlines()[2:]}
    assert listed == {rule.rule for rule in app.url_map.iter_rules()}


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
    assert parse_event_line(line)["payload"] == {"error_type": "X"}


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


def smoked_paths():
    """Every path the app serves (its static folder aside): the smoke check calls each one (SPEC S5)."""
    app = create_app({"TESTING": True})
    return {rule.rule for rule in app.url_map.iter_rules() if rule.endpoint != "static"}


def telemetry_samples():
    """This process's telemetry metric samples, by name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in REGISTRY.collect()
        if family.name.startswith("telemetry_")
        for sample in family.samples
    }


def assert_smoke_passed(output):
    *checks, events_line, where = output.splitlines()
    assert len(checks) >= 14 and all(line.startswith("ok") for line in checks), output
    for path in smoked_paths():
        assert any(path in line for line in checks)
    # One line per accepted event: /log's, the batch's, the four AI blocks'.
    assert re.fullmatch(r"ok   events: 6 line\(s\) in (\S+), one per accepted event", events_line), events_line
    events_path = events_line.split(" in ")[1].split(",")[0]
    assert f"Smoke events went to {events_path} (now removed)" in where
    assert not Path(events_path).exists()


@pytest.fixture
def production_environment(tmp_path, monkeypatch):
    """PROMETHEUS_MULTIPROC_DIR and FLASK_TELEMETRY_EVENTS_LOG set, as in a container; returns both paths."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    events_log = tmp_path / "production-events.jsonl"
    events_log.write_text('{"event_type": "chapter_visit", "note": "a real event"}\n')
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    monkeypatch.setenv("FLASK_TELEMETRY_EVENTS_LOG", str(events_log))
    return metrics_dir, events_log


def test_smoke_checks_every_route_and_leaves_no_trace(runner, events, production_environment):
    metrics_dir, events_log = production_environment
    before = events_log.read_bytes(), telemetry_samples()

    result = runner.invoke(args=["telemetry", "smoke"])

    assert result.exit_code == 0, result.output
    assert_smoke_passed(result.output)
    # Not the app's stream, not the environment's, not this process's metrics, not the metrics directory.
    assert events() == []
    assert (events_log.read_bytes(), telemetry_samples()) == before
    assert list(metrics_dir.iterdir()) == []


def test_smoke_from_the_command_line_leaves_no_trace(production_environment):
    metrics_dir, events_log = production_environment
    written = events_log.read_bytes()
    # The checks' process gets the app's settings: with a token they must send it.
    env = {**os.environ, "FLASK_TELEMETRY_INGEST_TOKEN": "smoke-s3cret"}

    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "telemetry", "smoke"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert_smoke_passed(result.stdout)
    assert events_log.read_bytes() == written
    assert list(metrics_dir.iterdir()) == []


def test_smoke_checks_the_app_with_its_own_settings(make_app):
    # Bodies of one byte at most: every POST the smoke sends is refused.
    app = make_app({"MAX_CONTENT_LENGTH": 1})

    result = app.test_cli_runner().invoke(args=["telemetry", "smoke"])

    assert result.exit_code != 0
    failed = [line for line in result.output.splitlines() if line.startswith("FAIL")]
    assert failed and all("-> 413" in line for line in failed)
    assert any("/api/ai/quiz" in line for line in failed)
    assert result.output.splitlines()[-1].startswith("Error:") and "smoke check(s) failed" in result.output


def test_smoke_events_check_fails_when_the_stream_holds_other_lines(app, events):
    results = list(run_smoke_checks(app))
    assert check_event_lines(app, results)[0]
    with open(app.config["TELEMETRY_EVENTS_LOG"], "a", encoding="utf-8") as stream:
        stream.write(json.dumps({"event_id": "x", "event_type": "chapter_visit"}) + "\n")

    passed, line = check_event_lines(app, results)

    assert not passed and line.startswith("FAIL events: 7 line(s)")
    assert "want {'ai_block_used': 4, 'chapter_visit': 1, 'error_event': 1}" in line


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
        rule.rule for rule in runner.app.url_map.iter_rules() if rule.rule.startswith("/api/telemetry/")
    }
