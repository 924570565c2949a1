"""Under real gunicorn (2 workers), load and faults: no event lost, no request stalled."""

import time
from concurrent.futures import ThreadPoolExecutor, as_completed

import pytest
from gunicorn_server import GunicornServer, StdoutPipe, json_lines

pytestmark = pytest.mark.gunicorn

LOG = "/api/telemetry/log"
HEALTH = "/api/telemetry/health"


def first_answer(send, status, attempts=200):
    """Call ``send`` until it answers ``status`` (a worker may not be stalled yet); the last answer."""
    for _ in range(attempts):
        answer = send()
        if answer[0] == status:
            break
        time.sleep(0.05)
    return answer


def visits(count, pad_every=37, pad_max=3800):
    """Events of many sizes, the largest close to the 4096-byte line limit."""
    return [
        {
            "event_type": "chapter_visit",
            "payload": {"chapter_id": f"ch-{number}", "note": "x" * (number * pad_every % pad_max)},
        }
        for number in range(count)
    ]


def accepted_ids(answers):
    return [reply["event_id"] for status, reply in answers if status == 202]


def assert_exactly_once(accepted, lines):
    """Every line is a whole event, and each accepted event is on the stream exactly once."""
    assert all(set(line) == {"event_id", "event_type", "timestamp", "payload"} for line in lines)
    assert sorted(line["event_id"] for line in lines) == sorted(accepted)


@pytest.mark.parametrize("options", [(), ("--preload",)], ids=["plain", "preload"])
def test_burst_from_a_client_pool_gives_one_line_per_202(tmp_path, options):
    bodies = visits(2000)
    with StdoutPipe(tmp_path / "collected.jsonl") as pipe, GunicornServer(tmp_path, *options, stdout=pipe) as server:
        pipe.start_reading()
        answers = server.burst(LOG, bodies)
        exit_code = server.stop()

    assert [status for status, _ in answers] == [202] * len(bodies)
    assert exit_code == 0
    assert_exactly_once(accepted_ids(answers), pipe.lines())


def test_sigterm_with_requests_in_flight_keeps_every_202(tmp_path):
    # Nobody reads stdout until SIGTERM, so the pipe fills and the workers'
    # backlogs hold most events when it arrives: only the drain at exit can
    # put them on the stream.
    bodies = visits(3000, pad_every=1, pad_max=2000)
    # Backlogged events are refused once a write has been blocked for the
    # stall limit: a limit a slow machine cannot reach keeps them coming.
    env = {"FLASK_TELEMETRY_STALL_SECONDS": "30"}
    with StdoutPipe(tmp_path / "collected.jsonl") as pipe, GunicornServer(tmp_path, env=env, stdout=pipe) as server:
        with ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(server.try_request, "POST", LOG, body) for body in bodies]
            for completed, _ in enumerate(as_completed(futures), 1):
                if completed == 300:
                    server.terminate()
                    pipe.start_reading()
            answers = [(status, reply) for status, _, reply in (future.result() for future in futures)]
        exit_code = server.stop()

    accepted = accepted_ids(answers)
    assert exit_code == 0
    assert len(accepted) >= 100
    assert {status for status, _ in answers} <= {202, 503, None}
    assert_exactly_once(accepted, pipe.lines())
    assert "not written" not in server.stderr_text()


def test_stdout_nobody_reads_never_stalls_ai_blocks(tmp_path):
    env = {"FLASK_TELEMETRY_STALL_SECONDS": "0.5"}
    question = {"chapter_id": "ch-1", "question": "q" * 1500}
    # A long graceful timeout: a worker that cannot exit by itself fails stop() below.
    options = ("--graceful-timeout", "120")
    with StdoutPipe(tmp_path / "unread") as pipe, GunicornServer(tmp_path, *options, env=env, stdout=pipe) as server:
        answers = []
        for _ in range(150):
            started = time.monotonic()
            status = server.request("POST", "/api/ai/ask-question", question)[0]
            answers.append((status, time.monotonic() - started))
        refused = first_answer(lambda: server.request("POST", LOG, {"event_type": "chapter_visit"}, timeout=5), 503)
        health = first_answer(lambda: server.request("GET", HEALTH, timeout=5), 503)
        exit_code = server.stop(timeout=20)

    assert [status for status, _ in answers] == [200] * len(answers)
    assert max(seconds for _, seconds in answers) < 2
    status, headers, problem = refused
    assert (status, headers["Retry-After"], headers["Content-Type"]) == (503, "1", "application/problem+json")
    assert "not accepting writes" in problem["detail"]
    assert health[0] == 503 and health[2]["status"] == "unhealthy"
    assert exit_code == 0
    assert "were not written before shutdown: the event stream is not accepting writes" in server.stderr_text()


def test_worker_recycling_under_load_loses_nothing(tmp_path):
    events_log = tmp_path / "events.jsonl"
    options = ("--max-requests", "250", "--max-requests-jitter", "50")
    env = {"FLASK_TELEMETRY_EVENTS_LOG": str(events_log)}
    bodies = visits(1000)
    with GunicornServer(tmp_path, *options, env=env) as server:
        answers = server.burst(LOG, bodies)
        exit_code = server.stop()

    assert [status for status, _ in answers] == [202] * len(bodies)
    assert exit_code == 0
    assert server.stderr_text().count("Autorestarting worker") >= 2
    assert_exactly_once(accepted_ids(answers), json_lines(events_log))


@pytest.mark.parametrize("target", ["events-log", "stdout"])
def test_full_disk_refuses_events_while_ai_blocks_keep_answering(tmp_path, target):
    env = {"FLASK_TELEMETRY_EVENTS_LOG": "/dev/full"} if target == "events-log" else {}
    with open("/dev/full", "wb") as full:
        stdout = full if target == "stdout" else None
        with GunicornServer(tmp_path, env=env, stdout=stdout) as server:
            refused = [server.request("POST", LOG, {"event_type": "chapter_visit"}) for _ in range(4)]
            batch = server.request("POST", "/api/telemetry/batch", {"events": [{"event_type": "error_event"}] * 3})
            answers = [server.request("POST", "/api/ai/quiz", {"chapter_id": "c"})[0] for _ in range(4)]
            health = first_answer(lambda: server.request("GET", HEALTH), 503)
            exit_code = server.stop()

    assert [status for status, _, _ in refused] == [503] * 4
    assert all(headers["Retry-After"] == "1" for _, headers, _ in refused)
    assert "ENOSPC" in refused[0][2]["detail"]
    assert batch[0] == 503 and [result["status"] for result in batch[2]["results"]] == [503] * 3
    assert answers == [200] * 4
    assert health[2]["status"] == "unhealthy" and "ENOSPC" in health[2]["reason"]
    assert exit_code == 0
    assert "Traceback" not in server.stderr_text()
