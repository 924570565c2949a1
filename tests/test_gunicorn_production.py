"""Under real gunicorn (2 workers), faults: a stream nobody reads or a full disk stalls no request.

Load, SIGTERM in flight and recycled workers: ``test_gunicorn_load.py``.
"""

import time

import pytest

from gunicorn_server import GunicornServer, StdoutPipe

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
