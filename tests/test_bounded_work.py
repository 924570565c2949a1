"""Bounded work (SPEC S13): a body dense in arrays and objects is refused before it is parsed."""

import json

import pytest
from app import create_app
from app.config import ConfigError

LOG = "/api/telemetry/log"
BATCH = "/api/telemetry/batch"


def event(payload):
    return {"event_type": "chapter_visit", "payload": payload}


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"l": [[]] * 3000}, id="wide-empty-lists"),
        pytest.param({"l": [{}] * 3000}, id="wide-empty-objects"),
        pytest.param({"l": [[[[[]]]]] * 600}, id="nested-and-wide"),
    ],
)
def test_a_body_with_more_containers_than_the_limit_is_refused_unparsed(make_app, read_events, monkeypatch, payload):
    app = make_app({"MAX_CONTENT_LENGTH": 1024 * 1024})
    parsed = []
    monkeypatch.setattr("app.json_body._STRICT_DECODER.decode", lambda text: parsed.append(text))

    response = app.test_client().post(LOG, data=json.dumps(event(payload)), content_type="application/json")

    assert response.status_code == 400
    assert "more than 2048 arrays and objects" in json.loads(response.data)["detail"]
    assert parsed == []
    assert read_events(app) == []


def test_brackets_inside_strings_do_not_count(client, events):
    text = '[{"quoted \\" [still] {in} the string'
    response = client.post(LOG, json=event({"query": text * 60}))

    assert response.status_code == 202
    assert len(events()) == 1


def test_a_full_batch_of_ordinary_events_is_well_within_the_limit(client):
    body = {"events": [event({"chapter_id": f"ch-{n}", "scores": [1, 2], "meta": {"a": [1]}}) for n in range(100)]}

    response = client.post(BATCH, json=body)

    assert response.status_code == 202


def test_the_limit_is_configurable(make_app):
    app = make_app({"JSON_MAX_CONTAINERS": 16})

    small = app.test_client().post(LOG, json=event({"l": [[]] * 10}))
    large = app.test_client().post(LOG, json=event({"l": [[]] * 20}))

    assert small.status_code == 202
    assert large.status_code == 400


@pytest.mark.parametrize("value", [15, "many", 2_000_000])
def test_a_bad_limit_stops_startup(value, tmp_path):
    with pytest.raises(ConfigError, match="JSON_MAX_CONTAINERS must be an integer"):
        create_app({"TESTING": True, "TELEMETRY_EVENTS_LOG": str(tmp_path / "e.jsonl"), "JSON_MAX_CONTAINERS": value})
