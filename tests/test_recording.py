"""record_events() and the app.testing plugin: what a developer's own test asserts on."""

import logging
import threading

import pytest
from app.analytics import get_event_logger
from flask import Blueprint

USER_ID_KEY = "k" * 40


def test_record_events_yields_the_events_as_written(make_app, read_events):
    app = make_app({"TELEMETRY_USER_ID_KEY": USER_ID_KEY})
    logger = app.extensions["event_logger"]

    with app.app_context(), logger.record_events() as events:
        logger.log("chapter_visit", {"user_id": "u-1", "chapter_id": "ch-1", "password": "hunter2"})
        logger.try_log("chapter_visited")

    assert events == read_events(app)
    (event,) = events
    assert event["event_type"] == "chapter_visit"
    assert event["payload"]["password"] == "[REDACTED]"
    assert event["payload"]["user_id"] != "u-1"


def test_only_the_events_written_while_open_and_by_its_own_app(make_app):
    first, second = make_app(), make_app()
    logger = first.extensions["event_logger"]
    with first.app_context():
        logger.log("error_event", {"error_type": "Before"})
    with second.app_context():
        other = second.extensions["event_logger"]

    with logger.record_events(first) as events, other.record_events(second) as others:
        with first.app_context():
            logger.log("error_event", {"error_type": "During"})
        with second.app_context():
            other.log("error_event", {"error_type": "Elsewhere"})
    with first.app_context():
        logger.log("error_event", {"error_type": "After"})

    assert [event["payload"]["error_type"] for event in events] == ["During"]
    assert [event["payload"]["error_type"] for event in others] == ["Elsewhere"]


def test_events_of_every_thread_and_of_a_batch_are_recorded(app, client):
    logger = app.extensions["event_logger"]

    def log_some(number):
        with app.app_context():
            for index in range(50):
                logger.log("error_event", {"error_type": f"T{number}-{index}"})

    with logger.record_events(app) as events:
        threads = [threading.Thread(target=log_some, args=(number,)) for number in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        client.post("/api/telemetry/batch", json={"events": [{"event_type": "chapter_visit"}] * 3})

    assert len(events) == 203
    assert len({event["event_id"] for event in events}) == 203
    assert [event["event_type"] for event in events[-3:]] == ["chapter_visit"] * 3


def test_nested_blocks_each_get_their_events(app):
    logger = app.extensions["event_logger"]
    with app.app_context(), logger.record_events() as outer:
        logger.log("error_event")
        with logger.record_events() as inner:
            logger.log("chapter_visit")
        logger.log("error_event")

    assert [event["event_type"] for event in outer] == ["error_event", "chapter_visit", "error_event"]
    assert [event["event_type"] for event in inner] == ["chapter_visit"]


def test_disabled_telemetry_records_nothing(make_app):
    app = make_app({"TELEMETRY_ENABLED": False})
    logger = app.extensions["event_logger"]
    with app.app_context(), logger.record_events() as events:
        logger.log("chapter_visit")

    assert events == []


def test_an_app_it_is_not_registered_on_is_refused(make_app):
    from flask import Flask

    with pytest.raises(RuntimeError, match="not registered"):
        with make_app().extensions["event_logger"].record_events(Flask(__name__)):
            pass


def test_the_fixture_records_a_blueprints_events(app, recorded_events):
    reading = Blueprint("reading", __name__, url_prefix="/api/reading")

    @reading.post("/chapters/<chapter_id>/visit")
    def visit_chapter(chapter_id):
        """Record that the reader opened a chapter."""
        get_event_logger().log("chapter_visit", {"chapter_id": chapter_id})
        return {"visited": chapter_id}

    app.register_blueprint(reading)

    assert app.test_client().post("/api/reading/chapters/ch-7/visit").status_code == 200
    assert [(event["event_type"], event["payload"]) for event in recorded_events] == [
        ("chapter_visit", {"chapter_id": "ch-7"})
    ]


def test_caplog_sees_events_of_an_app_made_inside_the_test(make_app, caplog):
    app = make_app()
    with app.app_context():
        get_event_logger().log("chapter_visit", {"chapter_id": "ch-2"})

    (record,) = [record for record in caplog.records if record.name == "app.analytics.events"]
    assert record.levelno == logging.INFO
    assert '"chapter_id":"ch-2"' in record.getMessage()
    with app.app_context():
        assert get_event_logger().health()["handler_failures"] == 0


def test_any_mapping_is_a_payload(app, recorded_events):
    from types import MappingProxyType

    with app.app_context():
        get_event_logger().log("chapter_visit", MappingProxyType({"chapter_id": "ch-4"}))

    assert recorded_events[0]["payload"] == {"chapter_id": "ch-4"}
