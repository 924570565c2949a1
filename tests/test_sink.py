"""The event sink under faults: stalled, full, dead or closed, and at interpreter exit."""

import logging
import os
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from app.analytics.sink import AppendFile, EventSink, StdoutStream, write_line
from event_lines import parse_event_line
from gunicorn_server import REPO_ROOT
from streams import UnreadPipe

VISIT = {"event_type": "chapter_visit", "payload": {"chapter_id": "ch-1"}}
QUIZ = {"chapter_id": "ch-1", "num_questions": 1}


def wait_until(condition, seconds=10.0):
    """Poll ``condition`` until it holds; fail the test if it never does."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.01)


def health(client):
    response = client.get("/api/telemetry/health")
    return response.status_code, response.get_json()


def test_stalled_stream_refuses_http_events_and_drops_in_app_ones(stalled_app, caplog):
    app = stalled_app({"TELEMETRY_STALL_SECONDS": 0.05})
    client = app.test_client()

    # The stream would block: the line waits in the backlog, its writer blocks.
    assert client.post("/api/telemetry/log", json=VISIT).status_code == 202
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


def test_full_backlog_refuses_and_keeps_every_accepted_event(stalled_app, unread_pipe):
    app = stalled_app({"TELEMETRY_QUEUE_SIZE": 2, "TELEMETRY_STALL_SECONDS": 600})
    client = app.test_client()

    queued = [client.post("/api/telemetry/log", json=VISIT) for _ in range(2)]
    refused = client.post("/api/telemetry/log", json=VISIT)
    status, report = health(client)
    unread_pipe.start_reading()

    assert [response.status_code for response in queued] == [202, 202]
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert "backlog is full" in refused.get_json()["detail"]
    assert (status, report["reason"], report["backlog"]) == (
        503,
        "the event backlog is full",
        {"depth": 2, "capacity": 2},
    )
    with app.app_context():
        assert app.extensions["event_logger"].flush()
    accepted = [response.get_json()["event_id"] for response in queued]
    assert [line["event_id"] for line in unread_pipe.lines()] == accepted
    assert health(client)[0] == 200


def test_lines_behind_a_backlog_keep_their_order(stalled_app, unread_pipe):
    app = stalled_app({"TELEMETRY_STALL_SECONDS": 600})
    client = app.test_client()
    with app.app_context():
        event_logger = app.extensions["event_logger"]
        for number in range(50):
            event_logger.log("chapter_visit", {"chapter_id": str(number)})
        unread_pipe.start_reading()
        for number in range(50, 100):
            event_logger.log("chapter_visit", {"chapter_id": str(number)})
        assert event_logger.flush()

    assert [line["payload"]["chapter_id"] for line in unread_pipe.lines()] == [str(n) for n in range(100)]
    assert health(client)[1]["events_logged"] == 100


def test_a_batch_writes_whole_lines_together_up_to_pipe_buf(make_app, tmp_path, monkeypatch):
    events_log = tmp_path / "events.jsonl"
    client = make_app({"TELEMETRY_EVENTS_LOG": str(events_log)}).test_client()
    writes = []
    real_write = os.write

    def write(fd, data):
        if os.path.realpath(f"/proc/self/fd/{fd}") == str(events_log):
            writes.append(bytes(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    batch = [
        {"event_type": "error_event", "payload": {"error_message": f"{number} " + "x" * 300}} for number in range(50)
    ]

    response = client.post("/api/telemetry/batch", json={"events": batch})

    assert response.status_code == 202 and response.get_json()["accepted"] == 50
    lines = events_log.read_bytes().splitlines(keepends=True)
    assert [parse_event_line(line)["payload"]["error_message"].split()[0] for line in lines] == [
        str(n) for n in range(50)
    ]
    # Each write as many whole lines, in order, as PIPE_BUF (4096 bytes) holds.
    expected = []
    for line in lines:
        if expected and len(expected[-1]) + len(line) <= 4096:
            expected[-1] += line
        else:
            expected.append(line)
    assert writes == expected and len(expected) < 10


def test_a_batch_behind_a_full_backlog_is_accepted_as_far_as_the_backlog_takes_it(stalled_app, unread_pipe):
    app = stalled_app({"TELEMETRY_QUEUE_SIZE": 3, "TELEMETRY_STALL_SECONDS": 600})
    client = app.test_client()
    batch = [{"event_type": "chapter_visit", "payload": {"chapter_id": str(number)}} for number in range(5)]

    response = client.post("/api/telemetry/batch", json={"events": batch})
    unread_pipe.start_reading()
    with app.app_context():
        assert app.extensions["event_logger"].flush()

    assert response.status_code == 202
    results = response.get_json()["results"]
    assert [result["status"] for result in results] == [202, 202, 202, 503, 503]
    assert all("backlog is full" in result["detail"] for result in results[3:])
    assert [line["event_id"] for line in unread_pipe.lines()] == [result["event_id"] for result in results[:3]]
    assert health(client)[1]["events_refused"] == 2


class RaisingHandler(logging.Handler):
    """Raises for every event, as a broken collector's handler might."""

    def handle(self, record):
        raise RuntimeError("collector down")


def test_a_raising_handler_on_the_events_logger_is_counted_and_never_fails_the_caller(
    make_app, on_events_logger, events_logger_records, read_events
):
    on_events_logger(RaisingHandler())
    app = make_app()
    client = app.test_client()

    statuses = [client.post("/api/telemetry/log", json=VISIT).status_code for _ in range(3)]
    answer = client.post("/api/ai/quiz", json=QUIZ)

    assert statuses == [202, 202, 202] and answer.status_code == 200
    assert len(read_events(app)) == 4
    # The handler after the raising one still sees every record.
    assert len(events_logger_records) == 4
    status, report = health(client)
    assert status == 200
    assert (report["handler_failures"], report["events_failed"]) == (4, 0)


def test_record_reaches_handlers_in_the_callers_thread_before_log_returns(app, events_logger_records):
    with app.app_context():
        app.extensions["event_logger"].log("chapter_visit", {"chapter_id": "now"})
        (record,) = events_logger_records

    assert record.thread == threading.get_ident()
    assert record.name == "app.analytics.events" and record.levelname == "INFO"
    assert parse_event_line(record.getMessage())["payload"] == {"chapter_id": "now"}


def test_no_record_is_built_when_no_handler_would_see_it(app, monkeypatch, read_events):
    # pytest's own log capture attaches handlers there; a deployment has none.
    monkeypatch.setattr(logging.getLogger("app.analytics.events"), "handlers", [])
    built = []
    monkeypatch.setattr(logging.Logger, "makeRecord", lambda *args, **kwargs: built.append(args))

    with app.app_context():
        app.extensions["event_logger"].log("chapter_visit", {"chapter_id": "c"})

    assert built == [] and len(read_events(app)) == 1


def test_line_is_on_the_stream_when_log_returns(app):
    with app.app_context():
        app.extensions["event_logger"].log("chapter_visit", {"chapter_id": "written"})
        # No flush: write-through means the line is already in the file.
        text = Path(app.config["TELEMETRY_EVENTS_LOG"]).read_text(encoding="ascii")

    assert parse_event_line(text)["payload"] == {"chapter_id": "written"}
    assert text.endswith("}\n") and text.count("\n") == 1


def test_full_disk_refuses_events_and_health_says_why(make_app, caplog):
    app = make_app({"TELEMETRY_EVENTS_LOG": "/dev/full"})
    client = app.test_client()

    refused = [client.post("/api/telemetry/log", json=VISIT) for _ in range(3)]
    batch = client.post("/api/telemetry/batch", json={"events": [VISIT, VISIT]})
    answer = client.post("/api/ai/quiz", json=QUIZ)

    assert [response.status_code for response in refused] == [503] * 3
    assert all(response.headers["Retry-After"] == "1" for response in refused)
    assert "ENOSPC" in refused[0].get_json()["detail"]
    assert batch.status_code == 503
    assert [result["status"] for result in batch.get_json()["results"]] == [503, 503]
    assert answer.status_code == 200
    status, report = health(client)
    assert (status, report["status"]) == (503, "unhealthy")
    assert report["reason"] == "the event stream failed: ENOSPC: No space left on device"
    assert (report["events_logged"], report["events_refused"], report["events_dropped"]) == (0, 5, 1)
    # Writes, not events: the batch's two lines share one write.
    assert report["events_failed"] == 5
    failures = [record for record in caplog.records if "writing to the event stream failed" in record.getMessage()]
    assert len(failures) == 1  # warned once, not once per event


def test_a_reader_that_exited_refuses_events(make_app, tmp_path):
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    app = make_app({"TELEMETRY_EVENTS_LOG": str(fifo)})
    client = app.test_client()
    assert client.post("/api/telemetry/log", json=VISIT).status_code == 202
    os.close(reader)  # the log shipper dies

    refused = client.post("/api/telemetry/log", json=VISIT)

    assert refused.status_code == 503
    assert "EPIPE" in refused.get_json()["detail"]
    assert client.post("/api/ai/quiz", json=QUIZ).status_code == 200
    status, report = health(client)
    assert status == 503 and report["reason"].startswith("the event stream failed: EPIPE")


def test_a_stream_that_fails_then_recovers(make_app, tmp_path, monkeypatch):
    stdout = open(tmp_path / "stdout.jsonl", "w", encoding="ascii")
    monkeypatch.setattr(sys, "stdout", stdout)
    app = make_app({"TELEMETRY_EVENTS_LOG": None})
    client = app.test_client()
    saved = os.dup(stdout.fileno())
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        first = client.post("/api/telemetry/log", json=VISIT)
        os.dup2(full, stdout.fileno())  # the disk fills up
        failed = [client.post("/api/telemetry/log", json=VISIT) for _ in range(2)]
        unhealthy = health(client)
        os.dup2(saved, stdout.fileno())  # space again
        recovered = client.post("/api/telemetry/log", json=VISIT)
        healthy = health(client)
    finally:
        os.close(full)
        os.close(saved)
        stdout.close()

    assert first.status_code == 202
    assert [response.status_code for response in failed] == [503, 503]
    assert unhealthy[0] == 503 and "ENOSPC" in unhealthy[1]["reason"]
    assert recovered.status_code == 202
    assert healthy[0] == 200 and "reason" not in healthy[1]
    lines = [parse_event_line(line) for line in (tmp_path / "stdout.jsonl").read_text().splitlines()]
    assert [line["event_id"] for line in lines] == [first.get_json()["event_id"], recovered.get_json()["event_id"]]


def test_shutdown_drains_then_refuses_and_is_idempotent(stalled_app, unread_pipe):
    app = stalled_app({"TELEMETRY_STALL_SECONDS": 5})
    client = app.test_client()
    accepted = [client.post("/api/telemetry/log", json=VISIT).get_json()["event_id"] for _ in range(5)]
    # The stream resumes while the drain waits for it.
    threading.Timer(0.2, unread_pipe.start_reading).start()

    with app.app_context():
        event_logger = app.extensions["event_logger"]
        event_logger.shutdown()
        event_logger.shutdown()
        event_logger.log("chapter_visit", {"chapter_id": "late"})
    refused = client.post("/api/telemetry/log", json=VISIT)

    wait_until(lambda: len(unread_pipe.lines()) == 5)
    assert [line["event_id"] for line in unread_pipe.lines()] == accepted
    assert refused.status_code == 503
    status, report = health(client)
    assert (status, report["reason"], report["events_dropped"]) == (503, "the event writer has shut down", 1)


def test_shutdown_gives_up_on_a_stream_that_takes_nothing(stalled_app, caplog):
    app = stalled_app({"TELEMETRY_STALL_SECONDS": 0.1})
    client = app.test_client()
    # The first is backlogged; the others are too unless the writer has been
    # blocked for the stall limit already (a slow machine): count what was.
    statuses = [client.post("/api/telemetry/log", json=VISIT).status_code for _ in range(3)]

    with app.app_context():
        app.extensions["event_logger"].shutdown()

    backlogged = statuses.count(202)
    assert statuses[0] == 202 and set(statuses) <= {202, 503}
    (warning,) = [record for record in caplog.records if "before shutdown" in record.getMessage()]
    assert warning.getMessage() == (
        f"telemetry: {backlogged} event(s) were not written before shutdown: the event stream is not accepting writes"
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
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        timeout=60,
        check=True,
    )

    stream = (tmp_path / events_log).read_bytes() if events_log else done.stdout
    lines = [parse_event_line(line) for line in stream.splitlines()]
    assert [line["payload"]["chapter_id"] for line in lines] == [str(number) for number in range(2000)]
    assert done.stderr == b""


def test_default_stream_follows_a_replaced_stdout(make_app, capsys):
    app = make_app({"TELEMETRY_EVENTS_LOG": None})
    with app.app_context():
        app.extensions["event_logger"].log("chapter_visit", {"chapter_id": "captured"})
        assert app.extensions["event_logger"].flush()

    (line,) = capsys.readouterr().out.splitlines()
    assert parse_event_line(line)["payload"] == {"chapter_id": "captured"}


def test_a_line_to_a_full_non_blocking_pipe_waits_and_stays_whole():
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    filled = _fill(write_fd)
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


def test_a_stdout_socket_with_a_small_send_buffer_takes_each_line_whole(make_app, monkeypatch):
    # journald gives a service a Unix stream socket as stdout. With a send
    # buffer of 8 KiB a line of 4 KiB would be queued in two pieces, and a
    # non-blocking write could take the first alone.
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    stdout = os.fdopen(os.dup(ours.fileno()), "w", encoding="ascii")
    monkeypatch.setattr(sys, "stdout", stdout)
    app = make_app({"TELEMETRY_EVENTS_LOG": None, "TELEMETRY_STALL_SECONDS": 600})
    client = app.test_client()
    event = {"event_type": "error_event", "payload": {"error_message": "m" * 3900}}
    received = bytearray()
    try:
        # Nobody reads: the first lines fill the buffer, the rest wait in the backlog.
        answers = [client.post("/api/telemetry/log", json=event) for _ in range(8)]
        reader = threading.Thread(target=lambda: received.extend(_read_until_closed(theirs)))
        reader.start()
        with app.app_context():
            assert app.extensions["event_logger"].flush()
        buffer = ours.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    finally:
        stdout.close()
        ours.close()
        reader.join(10)
        theirs.close()

    assert [answer.status_code for answer in answers] == [202] * 8
    assert buffer >= 2 * (4096 + 64)
    lines = [parse_event_line(line) for line in bytes(received).splitlines()]
    assert [line["event_id"] for line in lines] == [answer.get_json()["event_id"] for answer in answers]


def _read_until_closed(sock):
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_line_a_stream_takes_in_part_is_refused_and_ended_before_the_next(monkeypatch):
    # A stream that cannot be rewritten (a socket, a tty; here a pipe given a
    # line longer than PIPE_BUF, which a pipe may take in part) keeps the
    # fragment, so the sink's next write starts with the newline that ends it.
    read_fd, write_fd = os.pipe()
    stdout = os.fdopen(write_fd, "w", encoding="ascii")
    monkeypatch.setattr(sys, "stdout", stdout)
    sink = EventSink(StdoutStream(), capacity=10, stall_seconds=600)
    try:
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)
        filled = _fill(write_fd)
        os.set_blocking(write_fd, True)
        os.read(read_fd, 4096)  # room for one page of the next line, not for all of it
        long_line = b'{"event_id":"long","payload":"' + b"x" * 8000 + b'"}\n'
        refused = sink.write(long_line)
        problem = sink.problem()
        assert os.read(read_fd, filled) == b"f" * (filled - 4096) + long_line[:4096]
        accepted = sink.write(b'{"event_id":"next"}\n')
        rest = os.read(read_fd, 65536)
        recovered = sink.problem()
    finally:
        sink.close()
        stdout.close()
        os.close(read_fd)

    assert refused is False
    assert problem == "the event stream failed: the stream took only 4096 of 8033 bytes"
    assert accepted is True and recovered is None
    assert rest == b'\n{"event_id":"next"}\n'


def _fill(fd):
    """Fill the pipe that the non-blocking ``fd`` writes to, a page at a time; the bytes it holds."""
    filled = 0
    try:
        while True:
            filled += os.write(fd, b"f" * 4096)
    except BlockingIOError:
        return filled


def test_a_writer_that_cannot_write_stops_retrying_once_shutdown_gives_up(tmp_path, caplog):
    pipe = UnreadPipe(tmp_path / "events.fifo")
    sink = EventSink(AppendFile(pipe.path), capacity=10, stall_seconds=0.2)
    pipe.fill()
    assert sink.write(b'{"event": 1}\n')  # the pipe is full: into the backlog
    pipe.close()  # and its reader dies: every retry of the writer fails
    wait_until(lambda: sink.failed >= 2)

    sink.close(timeout=0.5)

    sink._thread.join(5)
    assert not sink._thread.is_alive()  # no retries, and no failures counted, after the drain
    assert "1 event(s) were not written before shutdown" in caplog.text
