"""Every error under /api is an RFC 9457 problem; a 500 hides its cause and emits an error_event."""

import pytest

PROBLEM = "application/problem+json"


@pytest.fixture
def failing_app(make_app):
    app = make_app()

    @app.get("/api/explode")
    def explode():
        raise KeyError("secret-internal-detail")

    return app


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/nowhere", 404),
        ("GET", "/", 404),
        ("GET", "/api/telemetry/log", 405),
        ("PUT", "/api/telemetry/log", 405),
        ("POST", "/api/telemetry/health", 405),
        ("DELETE", "/api/ai/quiz", 405),
    ],
)
def test_routing_errors_are_problems(client, events, method, path, status):
    response = client.open(path, method=method)

    assert response.status_code == status
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert set(body) == {"type", "title", "status", "detail"}
    assert body["status"] == status
    assert events() == []


def test_405_keeps_its_allow_header(client):
    response = client.get("/api/telemetry/log")

    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"POST"}


def test_unhandled_exception_is_a_bare_500_problem_and_one_error_event(failing_app, read_events):
    response = failing_app.test_client().get("/api/explode")

    assert response.status_code == 500
    assert response.mimetype == PROBLEM
    assert response.get_json() == {
        "type": "about:blank",
        "title": "Internal Server Error",
        "status": 500,
        "detail": "The server could not complete the request.",
    }
    assert b"secret-internal-detail" not in response.data and b"Traceback" not in response.data
    (line,) = read_events(failing_app)
    assert line["event_type"] == "error_event"
    assert line["payload"] == {
        "error_type": "KeyError",
        "error_message": "'secret-internal-detail'",
        "path": "/api/explode",
    }


def test_error_event_message_is_truncated(make_app, read_events):
    app = make_app()

    @app.get("/api/long-failure")
    def long_failure():
        raise RuntimeError("x" * 10_000)

    assert app.test_client().get("/api/long-failure").status_code == 500
    (line,) = read_events(app)
    assert len(line["payload"]["error_message"]) <= 500


def test_500_still_answers_when_telemetry_fails(failing_app, monkeypatch):
    from app.analytics import EventLogger

    def broken_log(self, event_type, payload=None):
        raise OSError("no stream")

    monkeypatch.setattr(EventLogger, "log", broken_log)

    response = failing_app.test_client().get("/api/explode")

    assert response.status_code == 500
    assert response.mimetype == PROBLEM
