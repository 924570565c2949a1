"""The event sink under faults: stalled, full, dead or closed, and at interpreter exit."""

import json
import logging
import os
import select
import subprocess
import sys
import threading
import time

import pytest

from app.analytics.sink import write_line

from gunicorn_server import REPO_ROOT
from handlers import GatedHandler

VISIT = {"event_type": "chapter_visit", "payload": {"chapter_id": "ch-1"}}
QUIZ = {"chapter_id": "ch-1", "num_questions": 1}


def wait_until(condition, seconds=5.0):
    """Poll ``condition`` until it holds; fail the test if it never does."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.01)


class RaisingHandler(logging.Handler):
    """Raises the given exception for every event."""

    def __init__(self, error):
        super().__init__()
        self.error = error

    def handle(self, record):
        raise self.error


def health(client):
    response = client.get("/api/telemetry/health")
    return response.status_code, response.get_json()


def test_stalled_stream_refuses_http_events_and_drops_in_app_ones(make_app, on_events_logger, caplog):
    gated = on_events_logger(GatedHandler())
    app = make_app({"TELEMETRY_STALL_SECONDS": 0.05})
    client = app.test_client()

    assert client.post("/api/telemetry/log", json=VISIT).status_code == 202
    assert gated.entered.wait(5)
    wait_until(lambda: health(client)[0] == 503)
    refused = client.post("/api/telemetry/log", json=VISIT)
    answers = [client.post("/api/ai/quiz", json=QUIZ) for _ in range(3)]

    assert refused.status_code == 503
    assert refused.mimetype == "application/problem+json"
    assert refused.headers["Retry-After"] == "1"
    assert [answer.status_code for answer in answers] == [200, 200, 200]
    status, report = health(client)
    assert (status, report["status"]) == (503, "unhealthy")
    assert report["reason"] == "the event stream is not accepting writes"
    assert (report["events_logged"], report["events_refused"], report["events_dropped"]) == (1, 1, 3)
    warnings = [record for record in caplog.records if "dropped" in record.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"


def test_full_backlog_refuses_and_keeps_every_accepted_event(make_app, on_events_logger, read_events):
    gated = on_events_logger(GatedHandler())
    app = make_app({"TELEMETRY_QUEUE_SIZE": 2, "TELEMETRY_STALL_SECONDS": 600})
    client = app.test_client()

    first = client.post("/api/telemetry/log", json=VISIT)
    assert gated.entered.wait(5)
    queued = [client.post("/api/telemetry/log", json=VISIT) for _ in range(2)]
    refused = client.post("/api/telemetry/log", json=VISIT)
    status, report = health(client)
    gated.gate.set()

    assert [response.status_code for response in (first, *queued)] == [202, 202, 202]
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert "backlog is full" in refused.get_json()["detail"]
    assert (status, report["reason"], report["queue"]) == (
        503,
        "the event backlog is full",
        {"depth": 2, "capacity": 2},
    )
    accepted = {response.get_json()["event_id"] for response in (first, *queued)}
    assert {line["event_id"] for line in read_events(app)} == accepted


def test_dead_writer_makes_the_sink_unavailable(make_app, on_events_logger, monkeypatch):
    # The writer is killed on purpose; its exit is not a test failure.
    monkeypatch.setattr(threading, "excepthook", lambda args: None)
    on_events_logger(RaisingHandler(SystemExit()))
    app = make_app()
    client = app.test_client()

    client.post("/api/telemetry/log", json=VISIT)
    wait_until(lambda: health(client)[0] == 503)
    refused = client.post("/api/telemetry/log", json=VISIT)
    answered = client.post("/api/ai/quiz", json=QUIZ)

    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert answered.status_code == 200
    report = health(client)[1]
    assert report["reason"] == "the event writer thread has stopped"
    assert report["events_dropped"] == 1


def test_a_failing_handler_on_the_events_logger_does_not_stop_the_writer(make_app, on_events_logger, read_events):
    on_events_logger(RaisingHandler(RuntimeError("collector down")))
    app = make_app()
    client = app.test_client()

    statuses = [client.post("/api/telemetry/log", json=VISIT).status_code for _ in range(3)]

    assert statuses == [202, 202, 202]
    assert len(read_events(app)) == 3
    status, report = health(client)
    assert status == 200 and report["events_failed"] == 3


def test_shutdown_drains_then_refuses_and_is_idempotent(make_app, on_events_logger, read_events):
    gated = on_events_logger(GatedHandler())
    app = make_app({"TELEMETRY_STALL_SECONDS": 5})
    client = app.test_client()
    accepted = [client.post("/api/telemetry/log", json=VISIT).get_json()["event_id"] for _ in range(5)]
    assert gated.entered.wait(5)
    # The stream resumes while the drain waits for it.
    threading.Timer(0.2, gated.gate.set).start()

    with app.app_context():
        event_logger = app.extensions["event_logger"]
        event_logger.shutdown()
        event_logger.shutdown()
        event_logger.log("chapter_visit", {"chapter_id": "late"})
    refused = client.post("/api/telemetry/log", json=VISIT)

    assert [line["event_id"] for line in read_events(app)] == accepted
    assert refused.status_code == 503
    status, report = health(client)
    assert (status, report["reason"], report["events_dropped"]) == (503, "the event writer has shut down", 1)


def test_shutdown_gives_up_on_a_stream_that_takes_nothing(make_app, on_events_logger, caplog):
    gated = on_events_logger(GatedHandler())
    app = make_app({"TELEMETRY_STALL_SECONDS": 0.1})
    client = app.test_client()
    for _ in range(3):
        client.post("/api/telemetry/log", json=VISIT)
    assert gated.entered.wait(5)

    with app.app_context():
        app.extensions["event_logger"].shutdown()

    (warning,) = [record for record in caplog.records if "before shutdown" in record.getMessage()]
    assert warning.getMessage() == (
        "telemetry: 3 event(s) were not written before shutdown: the event stream is not accepting writes"
    )


_EXIT_WITHOUT_SHUTDOWN = """
import sys
sys.path.insert(0, "backend")
from app import create_app
app = create_app()
with app.app_context():
    for number in range(2000):
        app.extensions["event_logger"].log("chapter_visit", {"chapter_id": str(number)})
"""


@pytest.mark.parametrize("events_log", [None, "events.jsonl"])
def test_normal_interpreter_exit_writes_every_queued_event(tmp_path, events_log):
    env = {name: value for name, value in os.environ.items() if not name.startswith("FLASK_")}
    if events_log:
        env["FLASK_TELEMETRY_EVENTS_LOG"] = str(tmp_path / events_log)
    done = subprocess.run(
        [sys.executable, "-c", _EXIT_WITHOUT_SHUTDOWN],
        cwd=REPO_ROOT, env=env, capture_output=True, timeout=60, check=True,
    )

    stream = (tmp_path / events_log).read_bytes() if events_log else done.stdout
    lines = [json.loads(line) for line in stream.splitlines()]
    assert [line["payload"]["chapter_id"] for line in lines] == [str(number) for number in range(2000)]
    assert done.stderr == b""


def test_default_stream_follows_a_replaced_stdout(make_app, capsys):
    app = make_app({"TELEMETRY_EVENTS_LOG": None})
    with app.app_context():
        app.extensions["event_logger"].log("chapter_visit", {"chapter_id": "captured"})
        assert app.extensions["event_logger"].flush()

    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["payload"] == {"chapter_id": "captured"}


def test_a_line_to_a_full_non_blocking_pipe_waits_and_stays_whole():
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    filled = 0
    try:
        while True:
            filled += os.write(write_fd, b"f" * 1024)
    except BlockingIOError:
        pass
    line = b'{"text":"' + b"y" * 4000 + b'"}\n'
    writer = threading.Thread(target=write_line, args=(write_fd, line))
    writer.start()
    received = b""
    try:
        # Read until the line is through or the pipe stays empty for a while.
        while len(received) < filled + len(line) and select.select([read_fd], [], [], 5)[0]:
            received += os.read(read_fd, 65536)
    finally:
        writer.join(5)
        os.close(read_fd)
        os.close(write_fd)

    assert received == b"f" * filled + line
