"""A disk that fills in the middle of a line: the stream keeps whole lines only (SPEC S2).

The events file lives on a real 64 KiB tmpfs, filled to the last byte by
another file: the kernel then takes the first bytes of a line, as many as fit
in the events file's last page, and refuses the rest.
"""

import itertools
import os
import subprocess
import sys
import threading
import time

import pytest
from app.analytics import sink as sink_module
from app.analytics.sink import CutShort, write_line
from event_lines import parse_event_line
from gunicorn_server import GunicornServer

SMALL = {"event_type": "chapter_visit", "payload": {"chapter_id": "ch-1"}}


def big(characters=3500):
    return {"event_type": "error_event", "payload": {"error_message": "x" * characters}}


@pytest.fixture
def disk(tmp_path):
    """A directory on a fresh 64 KiB tmpfs, unmounted afterwards."""
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mountpoint)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield mountpoint
    subprocess.run(["umount", "-l", str(mountpoint)], check=True)


def fill(directory):
    """Take every free byte of ``directory``'s filesystem with another file; its path."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (4096, 1):
            try:
                while True:
                    os.write(fd, b"f" * size)
            except OSError as error:
                assert error.errno == 28  # ENOSPC
    finally:
        os.close(fd)
    return filler


def stream_lines(path):
    """The file's lines: (events, blank lines, other lines)."""
    events, blank, other = [], [], []
    for line in path.read_bytes().split(b"\n")[:-1]:
        if not line.strip():
            blank.append(line)
            continue
        try:
            events.append(parse_event_line(line))
        except ValueError:
            other.append(line)
    return events, blank, other


def health(client):
    response = client.get("/api/telemetry/health")
    return response.status_code, response.get_json()


def test_a_line_the_full_disk_cuts_is_refused_and_leaves_no_fragment(make_app, disk):
    events_log = disk / "events.jsonl"
    app = make_app({"TELEMETRY_EVENTS_LOG": str(events_log)})
    client = app.test_client()
    accepted = [client.post("/api/telemetry/log", json=SMALL).get_json()["event_id"] for _ in range(22)]
    size_before = events_log.stat().st_size
    filler = fill(disk)

    cut = client.post("/api/telemetry/log", json=big())
    cut_health = health(client)
    refused = client.post("/api/telemetry/log", json=SMALL)
    full_health = health(client)
    filler.unlink()  # room again
    recovered = client.post("/api/telemetry/log", json=big())
    recovered_health = health(client)

    assert cut.status_code == 503 and cut.headers["Retry-After"] == "1"
    assert "the stream took only" in cut.get_json()["detail"]
    assert cut_health[0] == 503 and cut_health[1]["status"] == "unhealthy"
    assert cut_health[1]["reason"].startswith("the event stream failed: the stream took only")
    assert refused.status_code == 503 and "ENOSPC" in refused.get_json()["detail"]
    assert full_health[0] == 503 and "ENOSPC" in full_health[1]["reason"]
    assert recovered.status_code == 202
    assert recovered_health[0] == 200 and "reason" not in recovered_health[1]
    events, blank, other = stream_lines(events_log)
    assert [event["event_id"] for event in events] == accepted + [recovered.get_json()["event_id"]]
    assert other == []
    # The bytes of the cut line that fitted (in the page the 22 lines had
    # begun), overwritten where they lie: a line of no event.
    (fragment,) = blank
    assert 0 < len(fragment) < 3500
    assert events_log.read_bytes()[size_before : size_before + len(fragment) + 1] == fragment + b"\n"
    assert (recovered_health[1]["events_refused"], recovered_health[1]["events_failed"]) == (2, 2)


def test_a_batch_the_full_disk_cuts_keeps_the_lines_before_the_cut(make_app, disk):
    events_log = disk / "events.jsonl"
    app = make_app({"TELEMETRY_EVENTS_LOG": str(events_log)})
    client = app.test_client()
    before = [client.post("/api/telemetry/log", json=SMALL).get_json()["event_id"] for _ in range(22)]
    filler = fill(disk)

    # Its lines share writes, the first of which the page the 22 lines began cannot hold.
    batch = client.post("/api/telemetry/batch", json={"events": [SMALL] * 40})
    status, report = health(client)
    filler.unlink()

    assert batch.status_code == 202
    results = batch.get_json()["results"]
    taken = [result["event_id"] for result in results if result["status"] == 202]
    assert 0 < len(taken) < 40
    # The events before the cut are accepted, the cut one and every later one refused.
    assert [result["status"] for result in results] == [202] * len(taken) + [503] * (40 - len(taken))
    assert "the stream took only" in results[len(taken)]["detail"]
    assert status == 503 and report["events_failed"] == 1
    events, blank, other = stream_lines(events_log)
    assert [event["event_id"] for event in events] == before + taken
    assert other == [] and len(blank) <= 1
    assert client.post("/api/telemetry/log", json=SMALL).status_code == 202


@pytest.mark.parametrize("target", ["events-log", "stdout"])
def test_an_in_app_event_the_full_disk_cuts_is_dropped_and_counted(make_app, disk, caplog, monkeypatch, target):
    events_log = disk / "events.jsonl"
    if target == "stdout":
        # A stdout that is a file: its offset is shared with whoever else has it.
        monkeypatch.setattr(sys, "stdout", open(events_log, "a", encoding="ascii"))
    app = make_app({"TELEMETRY_EVENTS_LOG": None if target == "stdout" else str(events_log)})
    client = app.test_client()
    with app.app_context():
        event_logger = app.extensions["event_logger"]
        for number in range(22):
            event_logger.log("chapter_visit", {"chapter_id": str(number)})
        filler = fill(disk)
        event_logger.log("error_event", {"error_message": "x" * 3500})
        failed = health(client)
        filler.unlink()
        event_logger.log("chapter_visit", {"chapter_id": "after"})

    if target == "stdout":
        sys.stdout.close()
    assert failed[0] == 503 and failed[1]["events_dropped"] == 1
    events, blank, other = stream_lines(events_log)
    assert [event["payload"]["chapter_id"] for event in events] == [str(n) for n in range(22)] + ["after"]
    assert len(blank) == 1 and other == []
    assert health(client)[0] == 200
    assert any("the stream took only" in record.getMessage() for record in caplog.records)


def test_write_line_never_finishes_a_line_a_regular_file_took_in_part(disk):
    fd = os.open(disk / "events.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        os.write(fd, b"a" * 3000)
        fill(disk)
        with pytest.raises(CutShort) as cut:
            write_line(fd, b"b" * 3000 + b"\n", finish=False)
    finally:
        os.close(fd)

    assert cut.value.written == 4096 - 3000
    assert (disk / "events.jsonl").read_bytes() == b"a" * 3000 + b"b" * 1096


def test_the_backlog_writer_drops_a_cut_line_and_blanks_it(make_app, disk, monkeypatch):
    # A stdout that is a file the caller may not write itself (as a file on a
    # filesystem whose RWF_NOWAIT writes would block): the writer thread writes it.
    monkeypatch.setattr(sink_module, "_fallback_mode", lambda fd: sink_module._BACKLOG)
    stdout = open(disk / "stdout.jsonl", "w", encoding="ascii")
    monkeypatch.setattr(sys, "stdout", stdout)
    app = make_app({"TELEMETRY_EVENTS_LOG": None})
    client = app.test_client()
    try:
        with app.app_context():
            event_logger = app.extensions["event_logger"]
            for number in range(22):
                event_logger.log("chapter_visit", {"chapter_id": str(number)})
            assert event_logger.flush()
            filler = fill(disk)
            # Backlogged (202 for a stream only the writer writes), then cut by the full disk.
            event_logger.log("error_event", {"error_message": "x" * 3500})
            assert event_logger.flush()
            failed = health(client)
            filler.unlink()
            event_logger.log("chapter_visit", {"chapter_id": "after"})
            assert event_logger.flush()
            recovered = health(client)
    finally:
        stdout.close()

    assert failed[0] == 503 and "the stream took only" in failed[1]["reason"]
    assert recovered[0] == 200 and recovered[1]["backlog"]["depth"] == 0
    events, blank, other = stream_lines(disk / "stdout.jsonl")
    assert [event["payload"]["chapter_id"] for event in events] == [str(n) for n in range(22)] + ["after"]
    assert len(blank) == 1 and other == []


@pytest.mark.gunicorn
def test_two_workers_keep_whole_lines_while_the_disk_fills_and_frees(disk, tmp_path):
    events_log = disk / "events.jsonl"
    server = GunicornServer(tmp_path, env={"FLASK_TELEMETRY_EVENTS_LOG": str(events_log)}, workers=2)
    with server:
        small = server.burst("/api/telemetry/log", [SMALL] * 22, concurrency=4)
        filler = fill(disk)
        answers = []  # (status, event_id) of every event sent from now on
        room = threading.Event()
        stop = threading.Event()
        # Once the filler is gone the disk has room for about 37 of these
        # lines: the clients stop well before they could fill it again (a
        # second cut, with a second blanked fragment), however late a busy
        # machine lets this thread see the 12 it waits for.
        filler_gone = threading.Event()
        posts_with_room = itertools.count()

        def post_while_running():
            while not stop.is_set():
                if filler_gone.is_set() and next(posts_with_room) >= 24:
                    return
                status, _, reply = server.try_request("POST", "/api/telemetry/log", big(1500))
                answers.append((status, reply and reply.get("event_id")))
                if status == 503 and len(answers) >= 8:
                    room.set()

        clients = [threading.Thread(target=post_while_running) for _ in range(4)]
        for thread in clients:
            thread.start()
        try:
            # Room comes back while both workers are being sent events.
            assert room.wait(30), "no event was refused on the full disk"
            filler.unlink()
            filler_gone.set()
            deadline = time.monotonic() + 30
            while sum(status == 202 for status, _ in answers) < 12:
                assert time.monotonic() < deadline, "no event was accepted once there was room"
                stop.wait(0.01)
        finally:
            stop.set()
            for thread in clients:
                thread.join(30)

    statuses = {status for status, _ in answers}
    assert statuses <= {202, 503}, statuses
    assert [status for status, _ in small] == [202] * 22
    accepted = [reply["event_id"] for _, reply in small] + [event_id for status, event_id in answers if status == 202]
    events, blank, other = stream_lines(events_log)
    ids = [event["event_id"] for event in events]
    assert other == []  # no line holds a fragment glued to an event, nor two events
    assert len(blank) <= 1  # the one line the disk cut, blanked
    assert sorted(ids) == sorted(accepted) and len(set(ids)) == len(ids)
