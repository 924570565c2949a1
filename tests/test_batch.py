"""POST /api/telemetry/batch: each event judged as /log would judge it, one line per accepted event."""

import json

import pytest

BATCH = "/api/telemetry/batch"
PROBLEM = "application/problem+json"
EVENT_ID = "0b5a3c1e-7f0d-4a8e-9a55-2d1f6b2c9e11"


# Its line would exceed TELEMETRY_MAX_EVENT_BYTES (4096).
TOO_LARGE = {"event_type": "chapter_visit", "payload": {"note": "x" * 5000}}


def visit(chapter_id, **fields):
    return {"event_type": "chapter_visit", "payload": {"chapter_id": chapter_id}, **fields}


def test_every_valid_event_is_one_line_in_order(client, events):
    batch = [visit(f"ch-{number}") for number in range(5)]

    response = client.post(BATCH, json={"events": batch})

    assert response.status_code == 202
    reply = response.get_json()
    assert reply["status"] == "accepted"
    assert (reply["accepted"], reply["rejected"]) == (5, 0)
    assert [result["index"] for result in reply["results"]] == [0, 1, 2, 3, 4]
    assert {result["status"] for result in reply["results"]} == {202}
    lines = events()
    assert [line["payload"]["chapter_id"] for line in lines] == [f"ch-{number}" for number in range(5)]
    assert [line["event_id"] for line in lines] == [result["event_id"] for result in reply["results"]]


def test_mixed_batch_is_judged_event_by_event(client, events):
    batch = [
        visit("ch-1", event_id=EVENT_ID.upper()),
        {"event_type": "page_view"},
        "not an object",
        visit("ch-2", event_id="not-a-uuid"),
        {"event_type": "chapter_visit", "payload": {"chapter_id": 3}},
        {"event_type": "chapter_visit", "surprise": True},
        TOO_LARGE,
        {"event_type": "error_event", "payload": {"error_type": "TypeError"}},
    ]

    response = client.post(BATCH, json={"events": batch})

    assert response.status_code == 202
    reply = response.get_json()
    assert (reply["accepted"], reply["rejected"]) == (2, 6)
    assert [result["status"] for result in reply["results"]] == [202, 422, 422, 422, 422, 422, 413, 202]
    results = reply["results"]
    assert results[0]["event_id"] == EVENT_ID
    assert "event_type" in results[1]["errors"]
    assert results[2]["errors"] == {"_schema": ["Invalid input type."]}
    assert "event_id" in results[3]["errors"]
    assert results[4]["errors"] == {"payload": {"chapter_id": ["Not a valid string."]}}
    assert "surprise" in results[5]["errors"]
    assert "too large" in results[6]["detail"]
    assert all("event_id" not in result for result in results if result["status"] != 202)
    lines = events()
    assert [line["event_id"] for line in lines] == [EVENT_ID, results[7]["event_id"]]
    assert [line["event_type"] for line in lines] == ["chapter_visit", "error_event"]


@pytest.mark.parametrize("element", [None, "str", 42, True, []])
def test_an_element_that_is_not_an_object_is_refused_alone(client, events, element):
    response = client.post(BATCH, json={"events": [visit("ch-1"), element]})

    assert response.status_code == 202
    reply = response.get_json()
    assert (reply["accepted"], reply["rejected"]) == (1, 1)
    assert reply["results"][1] == {
        "index": 1,
        "status": 422,
        "detail": "The event failed validation.",
        "errors": {"_schema": ["Invalid input type."]},
    }
    assert [line["payload"]["chapter_id"] for line in events()] == ["ch-1"]


def test_each_event_gets_what_log_would_answer(client, app, read_events):
    """The same events, one by one through /log and together through /batch, get the same statuses."""
    samples = [
        visit("ch-1"),
        {"event_type": "ai_block_used", "payload": {"block_type": "poem"}},
        {"event_type": "error_event", "payload": "text"},
        TOO_LARGE,
        visit("ch-3", event_id=EVENT_ID),
    ]
    alone = [client.post("/api/telemetry/log", json=sample).status_code for sample in samples]

    reply = client.post(BATCH, json={"events": samples}).get_json()

    assert [result["status"] for result in reply["results"]] == alone == [202, 422, 422, 413, 202]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "events"),
        ({"events": []}, "events"),
        ({"events": None}, "events"),
        ({"events": {"event_type": "chapter_visit"}}, "events"),
        ({"events": "chapter_visit"}, "events"),
        ({"events": [visit("c")] * 101}, "events"),
        ({"events": [visit("c")], "extra": 1}, "extra"),
        ({"event_type": "chapter_visit"}, "event_type"),
    ],
)
def test_bad_envelope_is_422_and_emits_nothing(client, events, body, field):
    response = client.post(BATCH, json=body)

    assert response.status_code == 422
    assert response.mimetype == PROBLEM
    assert field in response.get_json()["errors"]
    assert events() == []


def test_batch_size_follows_the_setting(make_app, read_events):
    app = make_app({"TELEMETRY_MAX_BATCH_EVENTS": 3})
    client = app.test_client()

    assert client.post(BATCH, json={"events": [visit("c")] * 3}).status_code == 202
    response = client.post(BATCH, json={"events": [visit("c")] * 4})

    assert response.status_code == 422
    assert response.get_json()["errors"] == {"events": ["A batch holds 1 to 3 events, not 4."]}
    assert len(read_events(app)) == 3


def test_batch_with_no_valid_event_is_422_with_the_results(client, events):
    response = client.post(BATCH, json={"events": [{"event_type": "page_view"}, 5]})

    assert response.status_code == 422
    assert response.mimetype == PROBLEM
    problem = response.get_json()
    assert problem["type"] == "about:blank" and problem["title"] == "Unprocessable Entity"
    assert (problem["accepted"], problem["rejected"]) == (0, 2)
    assert [result["status"] for result in problem["results"]] == [422, 422]
    assert events() == []


def test_batch_of_only_too_large_events_is_413(client, events):
    response = client.post(BATCH, json={"events": [TOO_LARGE] * 2})

    assert response.status_code == 413
    assert [result["status"] for result in response.get_json()["results"]] == [413, 413]
    assert events() == []


def test_batch_refused_by_the_sink_is_503_with_retry_after(make_app):
    app = make_app({"TELEMETRY_RETRY_AFTER": 7})
    with app.app_context():
        app.extensions["event_logger"].shutdown()

    response = app.test_client().post(BATCH, json={"events": [visit("c"), {"event_type": "page_view"}]})

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "7"
    problem = response.get_json()
    assert [result["status"] for result in problem["results"]] == [503, 422]


@pytest.mark.parametrize("content_type", ["text/plain", "text/plain;charset=UTF-8"])
def test_text_plain_batch_is_read_as_json(client, events, content_type):
    response = client.post(BATCH, data=json.dumps({"events": [visit("c")]}), content_type=content_type)

    assert response.status_code == 202
    assert len(events()) == 1


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded", "text/html"])
def test_other_content_types_are_415(client, events, content_type):
    response = client.post(BATCH, data=json.dumps({"events": [visit("c")]}), content_type=content_type)

    assert response.status_code == 415
    assert events() == []


def test_token_guards_the_batch_route_too(make_app, read_events):
    app = make_app({"TELEMETRY_INGEST_TOKEN": "batch-token"})
    client = app.test_client()
    body = {"events": [visit("c")]}

    assert client.post(BATCH, json=body).status_code == 401
    assert client.post(BATCH, json=body, headers={"Authorization": "Bearer batch-token"}).status_code == 202
    assert len(read_events(app)) == 1


def test_telemetry_disabled_accepts_but_emits_nothing(make_app, read_events):
    app = make_app({"TELEMETRY_ENABLED": False})

    response = app.test_client().post(BATCH, json={"events": [visit("c")]})

    assert response.status_code == 202
    assert response.get_json()["telemetry_enabled"] is False
    assert read_events(app) == []
