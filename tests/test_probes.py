"""Liveness and readiness (SPEC S15): a stalled collector makes a worker unready, never dead."""

LIVE = "/api/telemetry/live"
READY = "/api/telemetry/ready"
VISIT = {"event_type": "chapter_visit", "payload": {"chapter_id": "ch-1"}}


def test_a_serving_process_is_live_and_ready(client):
    live, ready = client.get(LIVE), client.get(READY)

    assert (live.status_code, live.get_json()) == (200, {"status": "live"})
    assert (ready.status_code, ready.get_json()) == (200, {"status": "ready"})


def test_a_sink_that_cannot_accept_is_not_ready_but_still_live(stalled_app, unread_pipe):
    app = stalled_app({"TELEMETRY_QUEUE_SIZE": 1, "TELEMETRY_STALL_SECONDS": 600})
    client = app.test_client()
    statuses = [client.post("/api/telemetry/log", json=VISIT).status_code for _ in range(3)]

    live, ready = client.get(LIVE), client.get(READY)

    assert statuses == [202, 503, 503]
    assert (live.status_code, live.get_json()) == (200, {"status": "live"})
    assert ready.status_code == 503
    assert ready.get_json()["status"] == "not_ready" and "backlog" in ready.get_json()["reason"]
    unread_pipe.start_reading()


def test_a_failed_write_is_not_ready_until_a_write_succeeds(make_app):
    app = make_app({"TELEMETRY_EVENTS_LOG": "/dev/full"})
    client = app.test_client()

    assert client.post("/api/telemetry/log", json=VISIT).status_code == 503

    assert client.get(LIVE).status_code == 200
    ready = client.get(READY)
    assert ready.status_code == 503 and "ENOSPC" in ready.get_json()["reason"]


def test_probes_write_no_event(client, events):
    client.get(LIVE)
    client.get(READY)

    assert events() == []
