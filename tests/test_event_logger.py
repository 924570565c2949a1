"""EventLogger: validation, stamping, redaction, size cap and per-app isolation."""

import json
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from app.analytics import EventLogger, EventRejected, InvalidPayload, UnknownEventType
from event_lines import parse_event_line
from flask import Flask

TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z\Z")


def log(app, event_type, payload=None):
    with app.app_context():
        app.extensions["event_logger"].log(event_type, payload)


@pytest.mark.parametrize(
    ("event_type", "payload"),
    [
        (
            "ai_block_used",
            {
                "user_id": "u1",
                "chapter_id": "ch1",
                "section_id": "s1",
                "block_type": "quiz",
                "query": None,
            },
        ),
        ("chapter_visit", {"user_id": "u1", "chapter_id": "ch1", "timestamp": "2026-01-02T03:04:05Z"}),
        ("error_event", {"error_type": "TypeError", "error_message": "bad", "chapter_id": "c", "section_id": "s"}),
    ],
)
def test_log_emits_one_stamped_line(app, events, event_type, payload):
    log(app, event_type, payload)

    (line,) = events()
    assert list(line) == ["event_id", "event_type", "timestamp", "payload"]
    assert line["event_type"] == event_type
    assert line["payload"] == payload
    assert uuid.UUID(line["event_id"]).version == 4
    assert uuid.UUID(line["event_id"]).variant == uuid.RFC_4122
    assert str(uuid.UUID(line["event_id"])) == line["event_id"]
    assert TIMESTAMP.match(line["timestamp"])
    stamped = datetime.fromisoformat(line["timestamp"])
    assert abs((datetime.now(UTC) - stamped).total_seconds()) < 60


def test_lines_are_compact_ascii_json(app, read_events):
    log(app, "chapter_visit", {"chapter_id": "Kapitel \u00fcber \u4e2d\u6587 \U0001f600"})

    with app.app_context():
        app.extensions["event_logger"].flush()
    raw = Path(app.config["TELEMETRY_EVENTS_LOG"]).read_bytes()
    assert raw.isascii()
    assert raw.endswith(b"}\n") and raw.count(b"\n") == 1
    assert b": " not in raw and b", " not in raw
    assert json.loads(raw)["payload"]["chapter_id"] == "Kapitel \u00fcber \u4e2d\u6587 \U0001f600"


@pytest.mark.parametrize("payload", [None, {}])
def test_missing_payload_is_an_empty_object(app, events, payload):
    log(app, "error_event", payload)

    assert events()[0]["payload"] == {}


def test_unknown_payload_keys_are_kept(app, events):
    log(app, "chapter_visit", {"chapter_id": "c", "scroll_depth": 0.75, "tags": ["a", {"b": 1}]})

    assert events()[0]["payload"] == {"chapter_id": "c", "scroll_depth": 0.75, "tags": ["a", {"b": 1}]}


def test_client_fields_cannot_overwrite_server_fields(app, events):
    log(app, "chapter_visit", {"event_id": "forged", "event_type": "error_event", "timestamp": "2000-01-01T00:00:00Z"})

    (line,) = events()
    assert line["event_type"] == "chapter_visit"
    assert line["event_id"] != "forged"
    assert line["timestamp"] != "2000-01-01T00:00:00Z"
    assert line["payload"]["event_id"] == "forged"


@pytest.mark.parametrize("event_type", ["page_view", "", "AI_BLOCK_USED", None, 3])
def test_unknown_event_type_raises_and_emits_nothing(app, events, event_type):
    with pytest.raises(UnknownEventType) as raised:
        log(app, event_type, {})

    assert isinstance(raised.value, ValueError)
    assert "event_type" in str(raised.value)
    assert events() == []


@pytest.mark.parametrize(
    ("event_type", "payload", "field"),
    [
        ("ai_block_used", {"user_id": 5}, "user_id"),
        ("ai_block_used", {"block_type": "poem"}, "block_type"),
        ("ai_block_used", {"query": ["a"]}, "query"),
        ("chapter_visit", {"chapter_id": None}, "chapter_id"),
        ("chapter_visit", {"timestamp": "yesterday"}, "timestamp"),
        ("chapter_visit", {"timestamp": 1700000000}, "timestamp"),
        ("error_event", {"error_message": {"text": "x"}}, "error_message"),
        ("error_event", {"section_id": True}, "section_id"),
    ],
)
def test_wrong_field_type_raises_and_emits_nothing(app, events, event_type, payload, field):
    with pytest.raises(InvalidPayload) as raised:
        log(app, event_type, payload)

    assert field in raised.value.messages["payload"]
    assert events() == []


@pytest.mark.parametrize("payload", [[1, 2], "text", 7, {"value": float("nan")}, {"when": object()}])
def test_payload_that_is_not_a_json_object_raises(app, events, payload):
    with pytest.raises(EventRejected):
        log(app, "chapter_visit", payload)

    assert events() == []


def test_secret_named_keys_are_redacted_at_any_depth(app, events):
    payload = {
        "user_id": "u1",
        "Password": "hunter2",
        "auth": {"access_token": {"nested": "x"}, "list": [{"client_secret": 5}, {"ok": "kept"}]},
        "X-Authorization": None,
        "api_key": "k",
        "myApiKey": ["k"],
        "X-Api-Key": 1,
    }
    log(app, "chapter_visit", payload)

    assert events()[0]["payload"] == {
        "user_id": "u1",
        "Password": "[REDACTED]",
        "auth": {"access_token": "[REDACTED]", "list": [{"client_secret": "[REDACTED]"}, {"ok": "kept"}]},
        "X-Authorization": "[REDACTED]",
        "api_key": "[REDACTED]",
        "myApiKey": "[REDACTED]",
        "X-Api-Key": "[REDACTED]",
    }


@pytest.mark.parametrize(
    "text",
    ["a\nb", "a\rb", "a\u2028b", "a\u0085b", "a\x1b[31mb", '"}\n{"event_type":"error_event"}', "\x00"],
)
def test_payload_text_never_makes_a_second_line(app, read_events, text):
    log(app, "chapter_visit", {"chapter_id": text, text: "key"})

    with app.app_context():
        app.extensions["event_logger"].flush()
    raw = Path(app.config["TELEMETRY_EVENTS_LOG"]).read_bytes()
    assert raw.count(b"\n") == 1 and b"\r" not in raw and raw.isascii()
    assert json.loads(raw)["payload"] == {"chapter_id": text, text: "key"}


def test_oversized_event_is_truncated_for_in_app_callers(make_app, read_events):
    app = make_app({"TELEMETRY_MAX_EVENT_BYTES": 1024})
    log(app, "error_event", {"error_type": "Big", "error_message": "x" * 5000, "chapter_id": "\u00e9" * 900})

    with app.app_context():
        app.extensions["event_logger"].flush()
    raw = Path(app.config["TELEMETRY_EVENTS_LOG"]).read_bytes()
    assert len(raw) <= 1024
    line = json.loads(raw)
    assert line["truncated"] is True
    assert line["payload"]["error_type"] == "Big"
    assert line["payload"]["error_message"].startswith("xxx")
    assert line["payload"]["error_message"].endswith("...")


def test_event_within_the_limit_is_not_marked_truncated(app, events):
    log(app, "error_event", {"error_message": "x" * 3000})

    line = events()[0]
    assert "truncated" not in line
    assert line["payload"]["error_message"] == "x" * 3000


def test_telemetry_disabled_validates_but_emits_nothing(make_app, read_events):
    app = make_app({"TELEMETRY_ENABLED": False})
    log(app, "chapter_visit", {"chapter_id": "c"})
    with pytest.raises(UnknownEventType):
        log(app, "nope")

    assert read_events(app) == []
    with app.app_context():
        health = app.extensions["event_logger"].health()
    assert health["telemetry_enabled"] is False
    assert health["events_logged"] == 0


def test_second_init_app_on_the_same_app_raises(app):
    with pytest.raises(RuntimeError, match="already registered"):
        EventLogger(app)


def test_extension_is_reached_through_the_app(app):
    from app.analytics import get_event_logger

    with app.app_context():
        assert get_event_logger() is app.extensions["event_logger"]


def test_two_apps_keep_separate_streams_counters_and_config(make_app, read_events, events_logger_records):
    first = make_app({"TELEMETRY_MAX_EVENT_BYTES": 512})
    second = make_app()
    log(first, "chapter_visit", {"chapter_id": "first"})
    log(second, "chapter_visit", {"chapter_id": "second"})
    log(second, "error_event", {"error_message": "y" * 1000})

    assert [e["payload"]["chapter_id"] for e in read_events(first)] == ["first"]
    second_lines = read_events(second)
    assert [e["event_type"] for e in second_lines] == ["chapter_visit", "error_event"]
    assert "truncated" not in second_lines[1]
    with first.app_context():
        assert first.extensions["event_logger"].health()["events_logged"] == 1
    with second.app_context():
        assert second.extensions["event_logger"].health()["events_logged"] == 2
    assert first.extensions["event_logger"] is not second.extensions["event_logger"]
    # A handler on the parent logger sees every app's events, each exactly once.
    seen = sorted(
        parse_event_line(record.getMessage())["payload"].get("chapter_id", "-") for record in events_logger_records
    )
    assert seen == ["-", "first", "second"]
    assert all(record.levelname == "INFO" for record in events_logger_records)


def test_default_stream_is_stdout(capfd):
    from app import create_app

    app = create_app({"TESTING": True})
    try:
        log(app, "chapter_visit", {"chapter_id": "to-stdout"})
        with app.app_context():
            assert app.extensions["event_logger"].flush()
        out, err = capfd.readouterr()
        (line,) = out.splitlines()
        assert parse_event_line(line)["payload"] == {"chapter_id": "to-stdout"}
        assert err == ""
    finally:
        with app.app_context():
            app.extensions["event_logger"].shutdown()


def test_extension_works_on_a_plain_flask_app(tmp_path):
    app = Flask("plain")
    app.config["TELEMETRY_EVENTS_LOG"] = str(tmp_path / "plain.jsonl")
    EventLogger(app)
    with app.app_context():
        app.extensions["event_logger"].log("error_event", {"error_type": "X"})
        app.extensions["event_logger"].shutdown()
    (line,) = (tmp_path / "plain.jsonl").read_text().splitlines()
    assert parse_event_line(line)["payload"] == {"error_type": "X"}
