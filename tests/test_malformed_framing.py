"""Malformed HTTP framing read while a body is read: a 400 problem on every route, nothing written (S13)."""

import io
import json
import socket

import pytest
from gunicorn_server import GunicornServer

LOG = "/api/telemetry/log"
BATCH = "/api/telemetry/batch"
AI_ROUTES = ["/api/ai/ask-question", "/api/ai/explain-like-10", "/api/ai/quiz", "/api/ai/diagram"]
# What the client claims to be and where from must not matter: framing is judged first.
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
# Marker values an attacker would like to see in a log line.
MARKER = b"reader.seven@school.example.org Bearer abc123def456ghi789"

BODIES = {
    LOG: {"event_type": "chapter_visit", "payload": {"chapter_id": "ch-1"}},
    BATCH: {"events": [{"event_type": "chapter_visit", "payload": {"chapter_id": "ch-1"}}]},
    "/api/ai/ask-question": {"chapter_id": "ch-1", "question": "Why?"},
    "/api/ai/explain-like-10": {"chapter_id": "ch-1", "concept": "gravity"},
    "/api/ai/quiz": {"chapter_id": "ch-1", "num_questions": 1},
    "/api/ai/diagram": {"chapter_id": "ch-1", "description": "a cycle"},
}


def _chunk(data):
    return b"%x\r\n%s\r\n" % (len(data), data)


# Each framing error follows a whole, valid body: accepted framing would write an event.
FRAMINGS = {
    "chunk-size-not-hex": lambda body: b"FAKE-0 " + MARKER + b"\r\n\r\n",
    "chunk-size-after-a-good-chunk": lambda body: _chunk(body) + b"0x" + MARKER + b"\r\n\r\n",
    "chunk-size-line-too-long": lambda body: _chunk(body) + b"0" * 9000,
    "chunk-extension-invalid": lambda body: b"%x; =%s\r\n%s\r\n0\r\n\r\n" % (len(body), MARKER, body),
    "chunk-extension-bare-cr": lambda body: b"%x;a\rb\r\n%s\r\n0\r\n\r\n" % (len(body), body),
    "chunk-terminator-missing": lambda body: b"%x\r\n%sXY" % (len(body), body) + MARKER + b"\r\n0\r\n\r\n",
    "trailer-without-colon": lambda body: _chunk(body) + b"0\r\n" + MARKER + b"\r\n\r\n",
    "trailer-bare-lf": lambda body: _chunk(body) + b"0\r\nX-Note: " + MARKER + b"\nY: z\r\n\r\n",
    "trailer-name-invalid": lambda body: _chunk(body) + b"0\r\nX-Bad\x01Name: " + MARKER + b"\r\n\r\n",
    "trailer-obsolete-folding": lambda body: _chunk(body) + b"0\r\nX-Note: a\r\n " + MARKER + b"\r\n\r\n",
    "last-chunk-cut-short": lambda body: _chunk(body) + b"0\r\n",
    "chunked-body-cut-short": lambda body: b"%x\r\n%s" % (len(body) + 10, body),
}


def _request(path, framing, body):
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"User-Agent: {GOOGLEBOT}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    return head.encode() + FRAMINGS[framing](body)


def _cut_short(path, body):
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body) + 100}\r\n\r\n"
    )
    return head.encode() + body


def exchange(port, request, host="127.0.0.1"):
    """Send ``request``, close the sending side (a body cut short ends there), return the whole answer."""
    with socket.create_connection((host, port), timeout=10) as connection:
        connection.sendall(request)
        connection.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := connection.recv(65536):
            reply += chunk
    return reply


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # A budget of one event, already used: framing must be judged before the budget too.
    workdir = tmp_path_factory.mktemp("framing")
    # One worker: each worker keeps its own memory:// budget, and the second request may reach the other.
    with GunicornServer(workdir, workers=1, env={"FLASK_TELEMETRY_RATE_LIMIT": "1/hour"}) as running:
        status, _, _ = running.request("POST", LOG, BODIES[LOG])
        assert status == 202
        status, _, _ = running.request("POST", LOG, BODIES[LOG])
        assert status == 429
        yield running


@pytest.mark.gunicorn
@pytest.mark.parametrize("path", [LOG, BATCH, *AI_ROUTES])
def test_malformed_framing_is_a_400_problem_that_writes_nothing(server, path):
    before = len(server.event_lines(while_running=True))
    body = json.dumps(BODIES[path]).encode()
    requests = [_request(path, framing, body) for framing in FRAMINGS] + [_cut_short(path, body)]

    replies = [exchange(server.port, request) for request in requests]

    for name, reply in zip([*FRAMINGS, "content-length-cut-short"], replies, strict=True):
        head, _, reply_body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 "), (name, reply)
        assert b"\r\ncontent-type: application/problem+json" in head.lower(), name
        problem = json.loads(reply_body)
        assert problem["status"] == 400
        assert MARKER not in reply_body
    assert len(server.event_lines(while_running=True)) == before
    stderr = server.stderr_text()
    assert "Traceback" not in stderr
    assert "Error handling request" not in stderr
    assert "error_event" not in json.dumps(server.event_lines(while_running=True))


@pytest.mark.gunicorn
def test_malformed_framing_is_counted_as_a_refusal_not_a_server_error(server):
    exchange(server.port, _request(LOG, "chunk-size-not-hex", b""))

    status, _, text = server._send("GET", "/metrics")
    samples = [line for line in text.decode().splitlines() if not line.startswith("#")]

    assert status == 200
    assert any(line.startswith('telemetry_events_rejected_total{reason="400"}') for line in samples)
    assert not [line for line in samples if 'status="5' in line or 'reason="5' in line]


class _BrokenInput(io.RawIOBase):
    """A server's wsgi.input that hands out part of a body, then raises what a server raises."""

    def __init__(self, data, error):
        self._data = io.BytesIO(data)
        self._error = error

    def readable(self):
        return True

    def readinto(self, buffer):
        count = self._data.readinto(buffer)
        if count:
            return count
        raise self._error


class InvalidChunkSize(Exception):
    """Stands for gunicorn's exception of that name: not an OSError, not a ValueError."""


@pytest.mark.parametrize(
    "error",
    [InvalidChunkSize("FAKE-0 " + MARKER.decode()), OSError("connection reset"), ValueError("I/O on closed file")],
    ids=["server-parse-error", "os-error", "value-error"],
)
@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_an_error_in_the_middle_of_a_body_read_is_a_400(make_app, read_events, error, chunked):
    app = make_app()
    body = json.dumps(BODIES[LOG]).encode()
    stream = io.BufferedReader(_BrokenInput(body[:20], error))
    environ = {"wsgi.input": stream}
    if chunked:
        environ.update({"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input_terminated": True})
    else:
        environ["CONTENT_LENGTH"] = str(len(body))

    response = app.test_client().post(LOG, content_type="application/json", environ_overrides=environ)

    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert MARKER.decode() not in response.get_data(as_text=True)
    assert read_events(app) == []
