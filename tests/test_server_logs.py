"""The server's own log lines (gunicorn's error log, the app's logger, tracebacks) name no client (S11)."""

import logging
import socket

import pytest
from gunicorn_server import GunicornServer

# The client connects from its own loopback address, so the server's address
# (in "Listening at") is not mistaken for the client's.
CLIENT_ADDRESS = "127.0.0.56"
EMAIL = "reader.seven@school.example.org"
TOKEN = "abc123def456ghi789jkl012"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0NzExIn0.c2lnbmF0dXJlLW1hcmtlcg"
CARD = "4111111111111111"
MARKERS = [CLIENT_ADDRESS, EMAIL, TOKEN, JWT, CARD, "reader.seven", "school.example"]

SERVE = ["--config", "backend/gunicorn.conf.py", "--workers", "2", "--timeout", "2"]
PRODUCTION = [*SERVE, "--preload", "--graceful-timeout", "30"]

MALFORMED = {
    "request-line": f"GET /api/telemetry/health?card={CARD}&email={EMAIL} extra HTTP/1.1\r\n\r\n",
    "method": f"G\x01T /?token={TOKEN} HTTP/1.1\r\n\r\n",
    "version": f"GET /?card={CARD} HTTP/{EMAIL}\r\n\r\n",
    "header-without-colon": f"GET / HTTP/1.1\r\nHost: x\r\nAuthorization Bearer {JWT}\r\n\r\n",
    "header-name": f"GET / HTTP/1.1\r\nHost: x\r\nX-Bad\x01Name: {EMAIL}\r\n\r\n",
    "header-value": f"GET / HTTP/1.1\r\nHost: x\r\nX-Note: {TOKEN}\x00{EMAIL}\r\n\r\n",
    "expect": f"POST /api/telemetry/log HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-{EMAIL}\r\n\r\n",
}


def exchange(port, request):
    """Send ``request`` from CLIENT_ADDRESS and return the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(CLIENT_ADDRESS, 0)) as connection:
        connection.sendall(request.encode("latin-1"))
        connection.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := connection.recv(65536):
            reply += chunk
    return reply


@pytest.mark.gunicorn
@pytest.mark.parametrize("options", [SERVE, PRODUCTION], ids=["serve", "production"])
def test_no_log_line_holds_what_a_client_sent(tmp_path, options):
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")} if "--preload" in options else {}
    server = GunicornServer(
        tmp_path, *options, "--pythonpath", "backend,tests", workers=2, env=env, app="log_markers_app:create()"
    )
    with server:
        replies = {name: exchange(server.port, request) for name, request in MALFORMED.items()}
        crash = exchange(
            server.port,
            f"GET /test/crash?card={CARD}&email={EMAIL} HTTP/1.1\r\nHost: x\r\nX-Note: Bearer {TOKEN}\r\n\r\n",
        )
        hang = exchange(server.port, f"GET /test/hang?card={CARD}&token={TOKEN} HTTP/1.1\r\nHost: x\r\n\r\n")
        server.stop()
    stderr = server.stderr_text()

    for name, reply in replies.items():
        assert reply.split(b" ", 2)[1] in (b"400", b"417"), (name, reply)
    assert crash.startswith(b"HTTP/1.1 500 ")
    assert hang.startswith(b"HTTP/1.1 500 ") or hang == b""
    # What failed and where is still told: the parser's complaints, the frames, the timeout.
    assert stderr.count("Invalid request: ") == len(MALFORMED)
    assert "Traceback (most recent call last)" in stderr
    assert "log_markers_app.py" in stderr and "in crash" in stderr
    assert "RuntimeError: could not handle" in stderr
    assert "WORKER TIMEOUT" in stderr
    assert "Error handling request GET /test/hang" in stderr
    assert [marker for marker in MARKERS if marker in stderr] == []


def test_the_app_logger_scrubs_messages_and_exception_text(make_app, caplog):
    app = make_app()
    caplog.set_level(logging.ERROR)
    try:
        raise ValueError(f"bad value from {EMAIL}") from KeyError(f"Bearer {TOKEN}")
    except ValueError:
        app.logger.exception("while reading %s", f"?email={EMAIL}")

    text = caplog.text

    assert "while reading" in text and "ValueError: bad value from" in text and "KeyError" in text
    assert EMAIL not in text and TOKEN not in text
    assert "test_the_app_logger_scrubs_messages_and_exception_text" in text  # the frame is kept


def test_an_unexpected_error_is_logged_scrubbed_with_its_frames(make_app, caplog):
    app = make_app()

    @app.get("/test/boom")
    def boom():
        raise RuntimeError(f"{EMAIL} Bearer {TOKEN}")

    response = app.test_client().get(f"/test/boom?email={EMAIL}")
    text = caplog.text

    assert response.status_code == 500
    assert "in boom" in text and "RuntimeError: [EMAIL] Bearer [REDACTED]" in text
    assert EMAIL not in text and TOKEN not in text


@pytest.mark.parametrize(
    ("message", "args", "expected"),
    [
        ("Invalid request from ip=::1: Invalid HTTP Header: 'X-Note %s'", None, "Invalid request: Invalid HTTP Header"),
        (
            "Invalid request from ip=2001:db8::7: limit request headers fields size",
            None,
            "Invalid request: limit request headers fields size",
        ),
        ("Error handling request %s %s", ("GET", f"/x/{EMAIL}?card={CARD}#t"), "Error handling request GET /x/[EMAIL]"),
        ("Error handling request %s", (f"/x?token={TOKEN}",), "Error handling request /x"),
        (
            "Ignored premature client disconnection. %s",
            (OSError(f"after b'{EMAIL}'"),),
            "Ignored premature client disconnection. OSError",
        ),
        (
            "telemetry: dropped %d event(s): %s",
            (1, f"Bearer {TOKEN}"),
            "telemetry: dropped 1 event(s): Bearer [REDACTED]",
        ),
    ],
)
def test_each_kind_of_line_is_rewritten(message, args, expected):
    from app.gunicorn_logging import ScrubbingFilter

    record = logging.LogRecord(
        "gunicorn.error", logging.WARNING, __file__, 1, message.replace("%s'", f"{TOKEN}'"), args, None
    )

    assert ScrubbingFilter().filter(record) is True
    assert record.getMessage() == expected
