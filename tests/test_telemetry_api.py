"""POST /api/telemetry/log and GET /api/telemetry/health over the test client."""

import json
import time
import uuid

import pytest

PROBLEM = "application/problem+json"
VISIT = {"event_type": "chapter_visit", "payload": {"user_id": "u1", "chapter_id": "ch-1"}}


def assert_problem(response, status):
    assert response.status_code == status
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert body["title"] and body["detail"]
    assert "Traceback" not in response.get_data(as_text=True)
    return body


def test_accepted_event_answers_202_and_is_emitted(client, events):
    response = client.post("/api/telemetry/log", json=VISIT)

    assert response.status_code == 202
    reply = response.get_json()
    assert reply["status"] == "accepted"
    assert reply["event_type"] == "chapter_visit"
    assert reply["telemetry_enabled"] is True
    assert uuid.UUID(reply["event_id"]).version == 4
    (line,) = events()
    assert line == {
        "event_id": reply["event_id"],
        "event_type": "chapter_visit",
        "timestamp": reply["timestamp"],
        "payload": {"user_id": "u1", "chapter_id": "ch-1"},
    }


@pytest.mark.parametrize("payload", [None, {}])
def test_missing_or_null_payload_is_an_empty_object(client, events, payload):
    body = {"event_type": "error_event"} if payload is None else {"event_type": "error_event", "payload": payload}

    assert client.post("/api/telemetry/log", json=body).status_code == 202
    assert client.post("/api/telemetry/log", json={"event_type": "error_event", "payload": None}).status_code == 202
    assert [line["payload"] for line in events()] == [{}, {}]


def test_every_event_type_is_accepted(client, events):
    for event_type in ("ai_block_used", "chapter_visit", "error_event"):
        assert client.post("/api/telemetry/log", json={"event_type": event_type}).status_code == 202

    assert [line["event_type"] for line in events()] == ["ai_block_used", "chapter_visit", "error_event"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "event_type"),
        ({"payload": {}}, "event_type"),
        ({"event_type": "page_view"}, "event_type"),
        ({"event_type": 7}, "event_type"),
        ({"event_type": None}, "event_type"),
        ({"event_type": "chapter_visit", "payload": [1]}, "payload"),
        ({"event_type": "chapter_visit", "payload": "x"}, "payload"),
        ({"event_type": "chapter_visit", "extra": 1}, "extra"),
        ({"event_type": "chapter_visit", "payload": {"chapter_id": 3}}, "payload"),
        ({"event_type": "ai_block_used", "payload": {"block_type": "poem"}}, "payload"),
        ({"event_type": "ai_block_used", "payload": {"query": 5}}, "payload"),
        ({"event_type": "chapter_visit", "payload": {"timestamp": "soon"}}, "payload"),
        ({"event_type": "error_event", "payload": {"error_type": ["x"]}}, "payload"),
    ],
)
def test_invalid_event_is_422_with_field_messages(client, events, body, field):
    problem = assert_problem(client.post("/api/telemetry/log", json=body), 422)

    assert field in problem["errors"]
    assert events() == []


def test_wrong_payload_field_names_the_field(client):
    body = {"event_type": "ai_block_used", "payload": {"user_id": 1, "block_type": "quiz"}}

    problem = assert_problem(client.post("/api/telemetry/log", json=body), 422)

    assert problem["errors"] == {"payload": {"user_id": ["Not a valid string."]}}


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b"{", "application/json"),
        (b"", "application/json"),
        (b"[1, 2]", "application/json"),
        (b'"text"', "application/json"),
        (b"null", "application/json"),
        (b'{"event_type": NaN}', "application/json"),
        (b'{"event_type": "chapter_visit", "payload": {"x": Infinity}}', "application/json"),
        (b'{"event_type": "chapter_visit", "payload": {"x": -1e999}}', "application/json"),
        (b'{"event_type": "chapter_visit", "event_type": "error_event"}', "application/json"),
        (b'{"event_type": "chapter_visit", "payload": {"x": "\\ud800"}}', "application/json"),
        (b'{"event_type": "chapter_visit", "payload": {"x": "\xff"}}', "application/json"),
        (b'{"event_type": "chapter_visit", "payload": ' + b'{"a": ' * 40 + b"1" + b"}" * 41, "application/json"),
    ],
)
def test_malformed_json_is_400(client, events, data, content_type):
    assert_problem(client.post("/api/telemetry/log", data=data, content_type=content_type), 400)
    assert events() == []


@pytest.mark.parametrize(
    "content_type",
    [None, "application/x-www-form-urlencoded", "multipart/form-data", "text/json", "text/html", "text/plainx"],
)
def test_non_json_content_type_is_415(client, events, content_type):
    response = client.post("/api/telemetry/log", data=json.dumps(VISIT), content_type=content_type)

    assert_problem(response, 415)
    assert events() == []


@pytest.mark.parametrize("content_type", ["text/plain", "text/plain;charset=UTF-8", "TEXT/PLAIN; charset=utf-8"])
def test_text_plain_body_is_read_as_json(client, events, content_type):
    # What navigator.sendBeacon and a fetch without a preflight send.
    response = client.post("/api/telemetry/log", data=json.dumps(VISIT), content_type=content_type)

    assert response.status_code == 202
    (line,) = events()
    assert line["event_id"] == response.get_json()["event_id"]
    assert line["payload"] == VISIT["payload"]


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"not json", 400),
        (b'{"event_type": "chapter_visit", "payload": {"x": NaN}}', 400),
        (b'{"event_type": "chapter_visit", "event_type": "error_event"}', 400),
        (b"[]", 400),
        (b'{"event_type": "page_view"}', 422),
    ],
)
def test_text_plain_body_meets_the_same_strict_parser(client, events, data, status):
    assert_problem(client.post("/api/telemetry/log", data=data, content_type="text/plain"), status)
    assert events() == []


def test_ai_blocks_take_json_only(client, events):
    body = json.dumps({"chapter_id": "c", "question": "Why?"})

    assert_problem(client.post("/api/ai/ask-question", data=body, content_type="text/plain"), 415)
    assert events() == []


@pytest.mark.parametrize(
    ("sent", "written"),
    [
        ("0b5a3c1e-7f0d-4a8e-9a55-2d1f6b2c9e11", "0b5a3c1e-7f0d-4a8e-9a55-2d1f6b2c9e11"),
        ("0B5A3C1E-7F0D-4A8E-9A55-2D1F6B2C9E11", "0b5a3c1e-7f0d-4a8e-9a55-2d1f6b2c9e11"),
        ("0b5a3c1e7f0d4a8e9a552d1f6b2c9e11", "0b5a3c1e-7f0d-4a8e-9a55-2d1f6b2c9e11"),
        ("{0b5a3c1e-7f0d-4a8e-9a55-2d1f6b2c9e11}", "0b5a3c1e-7f0d-4a8e-9a55-2d1f6b2c9e11"),
    ],
)
def test_client_event_id_is_the_id_on_the_line_in_canonical_form(client, events, sent, written):
    response = client.post("/api/telemetry/log", json={**VISIT, "event_id": sent})

    assert response.status_code == 202
    assert response.get_json()["event_id"] == written
    assert [line["event_id"] for line in events()] == [written]


@pytest.mark.parametrize("event_id", ["", "not-a-uuid", "0b5a3c1e-7f0d-4a8e-9a55", 7, None, ["x"], {"a": 1}])
def test_client_event_id_that_is_not_a_uuid_is_422(client, events, event_id):
    body = assert_problem(client.post("/api/telemetry/log", json={**VISIT, "event_id": event_id}), 422)

    assert "event_id" in body["errors"]
    assert events() == []


def test_body_over_max_content_length_is_413(make_app, read_events):
    app = make_app({"MAX_CONTENT_LENGTH": 1024})
    body = {"event_type": "chapter_visit", "payload": {"note": "x" * 2000}}

    assert_problem(app.test_client().post("/api/telemetry/log", json=body), 413)
    assert read_events(app) == []


def test_event_whose_line_exceeds_the_limit_is_413(client, events):
    body = {"event_type": "chapter_visit", "payload": {"note": "x" * 4100}}

    problem = assert_problem(client.post("/api/telemetry/log", json=body), 413)

    assert "4096" in problem["detail"]
    assert events() == []


def test_escaped_characters_count_towards_the_line_limit(client, events):
    # 700 characters, but 4,200 bytes once escaped as \uXXXX on the ASCII line.
    body = {"event_type": "chapter_visit", "payload": {"note": "\u00e9" * 700}}

    assert_problem(client.post("/api/telemetry/log", json=body), 413)
    assert events() == []


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Bearer wrong", "Bearer s3cret-tokeN", "Basic s3cret-token", "s3cret-token"],
)
def test_ingest_token_is_required_when_configured(make_app, read_events, authorization):
    app = make_app({"TELEMETRY_INGEST_TOKEN": "s3cret-token"})
    headers = {} if authorization is None else {"Authorization": authorization}

    response = app.test_client().post("/api/telemetry/log", json=VISIT, headers=headers)

    problem = assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].lower().startswith("bearer")
    assert "s3cret" not in json.dumps(problem)
    assert read_events(app) == []


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_correct_ingest_token_is_accepted(make_app, read_events, scheme):
    app = make_app({"TELEMETRY_INGEST_TOKEN": "s3cret-token"})

    response = app.test_client().post(
        "/api/telemetry/log", json=VISIT, headers={"Authorization": f"{scheme} s3cret-token"}
    )

    assert response.status_code == 202
    assert len(read_events(app)) == 1


def test_token_is_checked_before_the_body_is_read(make_app):
    app = make_app({"TELEMETRY_INGEST_TOKEN": "s3cret-token"})

    response = app.test_client().post("/api/telemetry/log", data=b"{not json", content_type="application/json")

    assert_problem(response, 401)


def test_telemetry_disabled_accepts_but_emits_nothing(make_app, read_events):
    app = make_app({"TELEMETRY_ENABLED": False})
    client = app.test_client()

    response = client.post("/api/telemetry/log", json=VISIT)

    assert response.status_code == 202
    assert response.get_json()["telemetry_enabled"] is False
    assert client.get("/api/telemetry/health").get_json()["telemetry_enabled"] is False
    assert read_events(app) == []


def test_health_reports_real_counters_of_this_process(client, events):
    client.post("/api/telemetry/log", json=VISIT)
    client.post("/api/telemetry/log", json=VISIT)
    client.post("/api/telemetry/log", json={"event_type": "error_event"})
    client.post("/api/telemetry/log", json={"event_type": "nope"})

    response = client.get("/api/telemetry/health")

    assert response.status_code == 200
    health = response.get_json()
    assert health["status"] == "healthy"
    assert health["scope"] == "process"
    assert health["events_logged"] == 3
    assert health["events_by_type"] == {"ai_block_used": 0, "chapter_visit": 2, "error_event": 1}
    assert health["event_types"] == ["ai_block_used", "chapter_visit", "error_event"]
    assert health["events_dropped"] == 0
    assert len(events()) == 3


def test_health_leaks_no_secrets_paths_or_versions(make_app):
    app = make_app({"TELEMETRY_INGEST_TOKEN": "s3cret-token"})

    text = app.test_client().get("/api/telemetry/health").get_data(as_text=True)

    assert "s3cret" not in text
    assert app.config["TELEMETRY_EVENTS_LOG"] not in text
    assert "3.1" not in text and "python" not in text.lower()


def test_full_backlog_turns_ingestion_into_503_and_health_unhealthy(stalled_app, unread_pipe):
    app = stalled_app({"TELEMETRY_QUEUE_SIZE": 2, "TELEMETRY_RETRY_AFTER": 3, "TELEMETRY_STALL_SECONDS": 600})
    client = app.test_client()

    statuses = [client.post("/api/telemetry/log", json=VISIT).status_code for _ in range(6)]

    # The stream would block: two lines fit the backlog, then it is full.
    assert statuses == [202, 202, 503, 503, 503, 503]
    refused = client.post("/api/telemetry/log", json=VISIT)
    problem = assert_problem(refused, 503)
    assert refused.headers["Retry-After"] == "3"
    assert "backlog" in problem["detail"]
    health = client.get("/api/telemetry/health")
    assert health.status_code == 503
    assert health.get_json()["status"] == "unhealthy"
    assert health.get_json()["events_refused"] >= 1
    unread_pipe.start_reading()
    with app.app_context():
        assert app.extensions["event_logger"].flush()
    assert client.get("/api/telemetry/health").status_code == 200
    assert client.post("/api/telemetry/log", json=VISIT).status_code == 202


def test_stalled_stream_turns_ingestion_into_503(stalled_app):
    app = stalled_app({"TELEMETRY_STALL_SECONDS": 0.05})
    client = app.test_client()
    assert client.post("/api/telemetry/log", json=VISIT).status_code == 202

    with app.app_context():
        event_logger = app.extensions["event_logger"]
        assert not event_logger.flush(timeout=0.2)
        # The writer thread blocked on the stream for the stall limit (bounded, for a slow machine).
        deadline = time.monotonic() + 10
        while event_logger.health()["status"] == "healthy":
            assert time.monotonic() < deadline, "the stream never counted as stalled"
            time.sleep(0.01)

    problem = assert_problem(client.post("/api/telemetry/log", json=VISIT), 503)
    assert "stream" in problem["detail"]
    assert client.get("/api/telemetry/health").status_code == 503
