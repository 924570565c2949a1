"""Under real gunicorn (2 workers), load: bursts, SIGTERM in flight and recycled workers lose no event.

Apart from the faults (``test_gunicorn_production.py``) so that the two
files, each kept on one xdist worker, can run side by side.
"""

from concurrent.futures import ThreadPoolExecutor, as_completed

import pytest

from gunicorn_server import GunicornServer, StdoutPipe, json_lines

pytestmark = pytest.mark.gunicorn

LOG = "/api/telemetry/log"


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
