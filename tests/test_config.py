"""Configuration: defaults, create_app(config), FLASK_* environment, and refusal of bad values."""

import subprocess
import sys
from pathlib import Path

import pytest
from app import create_app
from app.config import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_defaults(app):
    assert app.config["MAX_CONTENT_LENGTH"] == 64 * 1024
    assert app.config["TELEMETRY_MAX_EVENT_BYTES"] == 4096
    assert app.config["TELEMETRY_ENABLED"] is True
    assert app.config["TELEMETRY_INGEST_TOKEN"] is None


def test_mapping_overrides_defaults(make_app):
    app = make_app({"MAX_CONTENT_LENGTH": 2048, "TELEMETRY_INGEST_TOKEN": "abc"})

    assert app.config["MAX_CONTENT_LENGTH"] == 2048
    assert app.config["TELEMETRY_INGEST_TOKEN"] == "abc"


def test_environment_overrides_mapping(make_app, monkeypatch, tmp_path):
    events_log = tmp_path / "env.jsonl"
    monkeypatch.setenv("FLASK_TELEMETRY_EVENTS_LOG", str(events_log))
    monkeypatch.setenv("FLASK_TELEMETRY_ENABLED", "false")
    monkeypatch.setenv("FLASK_MAX_CONTENT_LENGTH", "4096")
    monkeypatch.setenv("FLASK_TELEMETRY_INGEST_TOKEN", "123456")

    app = make_app({"MAX_CONTENT_LENGTH": 2048})

    assert app.config["TELEMETRY_EVENTS_LOG"] == str(events_log)
    assert app.config["TELEMETRY_ENABLED"] is False
    assert app.config["MAX_CONTENT_LENGTH"] == 4096
    assert app.config["TELEMETRY_INGEST_TOKEN"] == "123456"


@pytest.mark.parametrize("value", ["yes", "on", "1", "TRUE", True])
def test_enabled_accepts_common_spellings(make_app, value):
    assert make_app({"TELEMETRY_ENABLED": value}).config["TELEMETRY_ENABLED"] is True


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("MAX_CONTENT_LENGTH", "lots", "MAX_CONTENT_LENGTH must be an integer"),
        ("MAX_CONTENT_LENGTH", 0, "MAX_CONTENT_LENGTH must be an integer from"),
        ("TELEMETRY_MAX_EVENT_BYTES", 100_000, "TELEMETRY_MAX_EVENT_BYTES must be an integer from 256 to 4096"),
        ("TELEMETRY_MAX_EVENT_BYTES", 4.5, "TELEMETRY_MAX_EVENT_BYTES"),
        ("TELEMETRY_QUEUE_SIZE", -1, "TELEMETRY_QUEUE_SIZE"),
        ("TELEMETRY_STALL_SECONDS", "never", "TELEMETRY_STALL_SECONDS must be a number"),
        ("TELEMETRY_ENABLED", "maybe", "TELEMETRY_ENABLED must be true or false"),
        ("TELEMETRY_INGEST_TOKEN", "   ", "TELEMETRY_INGEST_TOKEN must be a non-empty string"),
        ("TELEMETRY_EVENTS_LOG", "/nonexistent-dir/events.jsonl", "cannot be opened for appending"),
    ],
)
def test_bad_value_stops_startup_with_a_clear_message(setting, value, message):
    with pytest.raises(ConfigError, match=message):
        create_app({setting: value})


def test_events_log_that_is_a_directory_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="TELEMETRY_EVENTS_LOG"):
        create_app({"TELEMETRY_EVENTS_LOG": str(tmp_path)})


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "flask", "--app", "wsgi", "routes"],
        [sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:0", "--no-control-socket", "wsgi:app"],
    ],
)
def test_bad_environment_value_fails_startup_in_one_line(command):
    env = {"PATH": "/usr/bin:/bin", "FLASK_TELEMETRY_MAX_EVENT_BYTES": "huge"}

    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)

    assert result.returncode == 4
    assert "Traceback" not in result.stderr
    assert "Configuration error: TELEMETRY_MAX_EVENT_BYTES must be an integer, got 'huge'" in result.stderr
    assert result.stdout == ""


def test_wsgi_exposes_an_app():
    import wsgi

    assert wsgi.app.name == "app"
    assert "event_logger" in wsgi.app.extensions
