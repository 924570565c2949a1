"""Every error under /api is an RFC 9457 problem; a 500 hides its cause and emits an error_event."""

import pytest
from app.analytics import EventRejected, get_event_logger

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


@pytest.mark.parametrize(
    ("event_type", "payload", "error_type"),
    [
        ("chapter_visited", {"chapter_id": "ch-1"}, "UnknownEventType"),
        ("chapter_visit", {"chapter_id": 1}, "InvalidPayload"),
        ("chapter_visit", "ch-1", "InvalidPayload"),
    ],
)
def test_an_event_the_app_logs_wrongly_is_a_500_not_the_clients_fault(
    make_app, read_events, caplog, event_type, payload, error_type
):
    app = make_app()

    @app.get("/api/open-chapter")
    def open_chapter():
        get_event_logger().log(event_type, payload)
        return {"opened": True}

    response = app.test_client().get("/api/open-chapter")

    assert response.status_code == 500
    assert response.mimetype == PROBLEM
    assert response.get_json()["detail"] == "The server could not complete the request."
    (line,) = read_events(app)
    assert line["event_type"] == "error_event"
    assert line["payload"]["error_type"] == error_type
    assert line["payload"]["path"] == "/api/open-chapter"
    (warning,) = [record for record in caplog.records if record.name == app.logger.name]
    assert warning.levelname == "WARNING"
    assert error_type in warning.getMessage() and "/api/open-chapter" in warning.getMessage()


def test_an_event_the_app_catches_or_try_logs_changes_nothing(make_app, read_events):
    app = make_app()

    @app.get("/api/careful")
    def careful():
        try:
            get_event_logger().log("chapter_visited")
        except EventRejected:
            pass
        return {"logged": get_event_logger().try_log("chapter_visited")}

    response = app.test_client().get("/api/careful")

    assert (response.status_code, response.get_json()) == (200, {"logged": False})
    assert read_events(app) == []


def test_an_event_the_client_sends_wrongly_stays_a_422(client, events):
    # The payload is judged by the EventLogger, which raises the same InvalidPayload as for the app's own call.
    response = client.post("/api/telemetry/log", json={"event_type": "chapter_visit", "payload": {"chapter_id": 1}})

    assert response.status_code == 422
    assert response.get_json()["errors"] == {"payload": {"chapter_id": ["Not a valid string."]}}
    assert events() == []
