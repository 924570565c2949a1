"""Unexpected errors and bad settings: a problem without internals, or no start at all."""

import subprocess
import sys

import pytest

from app import create_app
from app.config import ConfigError
from gunicorn_server import REPO_ROOT


def test_unhandled_exception_is_a_bare_500_problem_and_one_error_event(app, client, events):
    def explode():
        raise KeyError("secret-internal-detail")

    app.add_url_rule("/api/explode", "explode", explode)

    response = client.get("/api/explode")

    assert response.status_code == 500
    assert response.mimetype == "application/problem+json"
    assert response.get_json() == {
        "type": "about:blank",
        "title": "Internal Server Error",
        "status": 500,
        "detail": "The server could not complete the request.",
    }
    assert b"secret-internal-detail" not in response.data and b"Traceback" not in response.data
    (line,) = events()
    assert line["event_type"] == "error_event"
    assert line["payload"] == {
        "error_type": "KeyError",
        "error_message": "'secret-internal-detail'",
        "path": "/api/explode",
    }


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"TELEMETRY_MAX_EVENT_BYTES": 10}, "TELEMETRY_MAX_EVENT_BYTES must be an integer from 256 to 4096"),
        ({"TELEMETRY_ENABLED": "maybe"}, "TELEMETRY_ENABLED must be true or false"),
        ({"MAX_CONTENT_LENGTH": "lots"}, "MAX_CONTENT_LENGTH must be an integer"),
        ({"TELEMETRY_INGEST_TOKEN": "  "}, "TELEMETRY_INGEST_TOKEN must be a non-empty string"),
    ],
)
def test_bad_setting_refuses_to_start(config, message):
    with pytest.raises(ConfigError, match=message):
        create_app(config)


def test_wsgi_reports_a_bad_setting_in_one_line_and_exits_4():
    env = {"PATH": "/usr/bin:/bin", "FLASK_TELEMETRY_QUEUE_SIZE": "0"}
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 4
    assert result.stderr == (
        "Configuration error: TELEMETRY_QUEUE_SIZE must be an integer from 1 to 1000000, got 0\n"
    )
    assert result.stdout == ""
