"""Hostile bodies and credentials: a clear 4xx problem or one intact line, never a 500."""

import hmac
import io
import json
import socket
from pathlib import Path

import pytest
from gunicorn_server import GunicornServer

LOG = "/api/telemetry/log"
BATCH = "/api/telemetry/batch"
ASK = "/api/ai/ask-question"
TOKEN = "s3cret-ingest-token-0123456789"
BIG_BODIES = {"MAX_CONTENT_LENGTH": 1024 * 1024}


def event(payload):
    return b'{"event_type":"chapter_visit","payload":' + payload + b"}"


def batch(*events):
    return b'{"events":[' + b",".join(events) + b"]}"


def nested(depth):
    return b'{"a":' * depth + b"{}" + b"}" * depth


REFUSED = [
    # (body, expected status, config, path)
    pytest.param(b"[" * 100_000 + b"]" * 100_000, 400, BIG_BODIES, LOG, id="array-nested-100000-deep"),
    pytest.param(event(nested(100_000)), 400, BIG_BODIES, LOG, id="payload-nested-100000-deep"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, 413, {}, LOG, id="nested-100000-deep-over-default-limit"),
    pytest.param(event(nested(1_000)), 400, {}, LOG, id="payload-nested-1000-deep"),
    pytest.param(event(b'{"list":' + b"[" * 1_000 + b"]" * 1_000 + b"}"), 400, {}, LOG, id="list-nested-1000-deep"),
    pytest.param(b'{"chapter_id":"c","question":' + nested(1_000) + b"}", 400, {}, ASK, id="ai-block-nested-1000-deep"),
    pytest.param(event(b'{"n":NaN}'), 400, {}, LOG, id="nan"),
    pytest.param(event(b'{"n":Infinity}'), 400, {}, LOG, id="infinity"),
    pytest.param(event(b'{"n":-Infinity}'), 400, {}, LOG, id="minus-infinity"),
    pytest.param(b'{"chapter_id":"c","num_questions":NaN}', 400, {}, "/api/ai/quiz", id="ai-block-nan"),
    pytest.param(event(b'{"n":' + b"1" * 5_000 + b"}"), 400, {}, LOG, id="integer-of-5000-digits"),
    pytest.param(event(b'{"s":"\\ud800"}'), 400, {}, LOG, id="lone-high-surrogate"),
    pytest.param(event(b'{"s":"tail \\udfff"}'), 400, {}, LOG, id="lone-low-surrogate"),
    pytest.param(event(b'{"\\udc00":"in a key"}'), 400, {}, LOG, id="lone-surrogate-in-a-key"),
    pytest.param(b'{"chapter_id":"c","question":"\\ud83d"}', 400, {}, ASK, id="ai-block-lone-surrogate"),
    pytest.param(event(b'{"s":"\xff"}'), 400, {}, LOG, id="invalid-utf8-byte"),
    pytest.param(event(b'{"s":"\xc0\xaf"}'), 400, {}, LOG, id="overlong-utf8"),
    pytest.param(event(b'{"s":"\xed\xa0\x80"}'), 400, {}, LOG, id="utf8-encoded-surrogate"),
    pytest.param(b"\xef\xbb\xbf" + event(b"{}"), 400, {}, LOG, id="utf8-bom"),
    pytest.param(event(b'{"s":"raw\nnewline"}'), 400, {}, LOG, id="raw-control-character-in-a-string"),
    pytest.param(event(b'{"s":"' + b"x" * 70_000 + b'"}'), 413, {}, LOG, id="body-over-max-content-length"),
    pytest.param(event(b'{"s":"' + b"x" * 5_000 + b'"}'), 413, {}, LOG, id="line-over-4096-bytes"),
    pytest.param(event(b'{"s":"' + b"\\u00e9" * 700 + b'"}'), 413, {}, LOG, id="line-over-4096-bytes-once-escaped"),
    pytest.param(b"", 400, {}, LOG, id="empty-body"),
    pytest.param(b"   ", 400, {}, LOG, id="whitespace-body"),
    pytest.param(b"null", 400, {}, LOG, id="null"),
    pytest.param(b'"chapter_visit"', 400, {}, LOG, id="json-string"),
    pytest.param(b"[]", 400, {}, LOG, id="json-array"),
    pytest.param(b"7", 400, {}, LOG, id="json-number"),
    pytest.param(event(b"{}") + b" trailing", 400, {}, LOG, id="trailing-garbage"),
    pytest.param(
        b'{"event_type":"chapter_visit","event_type":"error_event"}', 400, {}, LOG, id="duplicate-top-level-key"
    ),
    pytest.param(event(b'{"user_id":"a","user_id":"b"}'), 400, {}, LOG, id="duplicate-payload-key"),
    pytest.param(b'{"chapter_id":"c","chapter_id":"d","question":"q"}', 400, {}, ASK, id="ai-block-duplicate-key"),
    pytest.param(batch(event(nested(1_000))), 400, {}, BATCH, id="batch-event-nested-1000-deep"),
    pytest.param(batch(event(b"{}"), event(b'{"n":NaN}')), 400, {}, BATCH, id="batch-nan-in-one-event"),
    pytest.param(batch(event(b'{"s":"\\ud800"}')), 400, {}, BATCH, id="batch-lone-surrogate"),
    pytest.param(batch(event(b'{"s":"\xff"}')), 400, {}, BATCH, id="batch-invalid-utf8"),
    pytest.param(b'{"events":[],"events":[]}', 400, {}, BATCH, id="batch-duplicate-key"),
    pytest.param(batch(event(b"{}")) + b",", 400, {}, BATCH, id="batch-trailing-garbage"),
    pytest.param(b"[" + event(b"{}") + b"]", 422, {}, BATCH, id="batch-bare-list-of-events"),
    pytest.param(b'{"events":[]}', 422, {}, BATCH, id="batch-empty"),
    pytest.param(b'{"events":' + event(b"{}") + b"}", 422, {}, BATCH, id="batch-events-not-a-list"),
    pytest.param(batch(*[event(b"{}")] * 101), 422, {}, BATCH, id="batch-of-101-events"),
    pytest.param(batch(*[b"1"] * 30_000), 400, BIG_BODIES, BATCH, id="batch-of-30000-numbers-over-the-item-limit"),
    pytest.param(batch(b'"x"', b"null", b"[]"), 422, {}, BATCH, id="batch-of-non-objects"),
    pytest.param(batch(event(b'{"s":"' + b"x" * 5_000 + b'"}')), 413, {}, BATCH, id="batch-line-over-4096-bytes"),
    pytest.param(batch(*[event(b'{"s":"' + b"x" * 3_000 + b'"}')] * 30), 413, {}, BATCH, id="batch-body-over-limit"),
]

# The ingestion routes read a text/plain body exactly as they read JSON.
TEXT_PLAIN = [row for row in REFUSED if row.values[3] in (LOG, BATCH)]


@pytest.mark.parametrize(("body", "status", "config", "path"), REFUSED)
def test_hostile_body_is_a_problem_and_emits_nothing(make_app, read_events, body, status, config, path):
    assert_refused(make_app(config), read_events, path, body, "application/json", status)


@pytest.mark.parametrize(("body", "status", "config", "path"), TEXT_PLAIN)
def test_hostile_text_plain_body_is_the_same_problem(make_app, read_events, body, status, config, path):
    assert_refused(make_app(config), read_events, path, body, "text/plain;charset=UTF-8", status)


def assert_refused(app, read_events, path, body, content_type, status):
    response = app.test_client().post(path, data=body, content_type=content_type)

    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["status"] == status
    assert problem["type"] == "about:blank" and problem["title"] and problem["detail"]
    assert read_events(app) == []


FORGED_LINE = '"}}\n{"event_id":"forged","event_type":"error_event","timestamp":"2000-01-01T00:00:00Z","payload":{}}\n'


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("line\nbreak", id="newline"),
        pytest.param("carriage\rreturn", id="carriage-return"),
        pytest.param("line\u2028separator", id="u2028"),
        pytest.param("next\u0085line", id="u0085"),
        pytest.param("\x1b[31mred\x1b[0m", id="escape"),
        pytest.param(FORGED_LINE, id="forged-event-line"),
    ],
)
def test_payload_text_stays_inside_one_intact_line(app, client, read_events, text):
    payload = {
        "chapter_id": text,
        text: "as a key",
        "event_id": "forged",
        "event_type": "error_event",
        "timestamp": "2000-01-01T00:00:00Z",
    }
    body = json.dumps({"event_type": "chapter_visit", "payload": payload}, ensure_ascii=False)

    response = client.post(LOG, data=body.encode(), content_type="application/json")

    assert response.status_code == 202
    reply = response.get_json()
    (line,) = read_events(app)
    raw = Path(app.config["TELEMETRY_EVENTS_LOG"]).read_bytes()
    assert raw.count(b"\n") == 1 and raw.endswith(b"}\n") and raw.isascii()
    assert b"\r" not in raw and b"\x1b" not in raw
    assert (line["event_id"], line["event_type"], line["timestamp"]) == (
        reply["event_id"],
        "chapter_visit",
        reply["timestamp"],
    )
    assert line["payload"] == payload


def test_secret_named_keys_are_redacted(app, client, read_events):
    payload = {
        "user_id": "u-1",
        "password": "hunter2",
        "Authorization": "Bearer abc",
        "session": {"refresh_token": {"value": "t"}, "items": [{"client_secret": 42}, {"kept": "yes"}]},
        "API_KEY": ["k"],
        "myApiKey": None,
    }

    response = client.post(LOG, json={"event_type": "chapter_visit", "payload": payload})

    assert response.status_code == 202
    (line,) = read_events(app)
    assert line["payload"] == {
        "user_id": "u-1",
        "password": "[REDACTED]",
        "Authorization": "[REDACTED]",
        "session": {"refresh_token": "[REDACTED]", "items": [{"client_secret": "[REDACTED]"}, {"kept": "yes"}]},
        "API_KEY": "[REDACTED]",
        "myApiKey": "[REDACTED]",
    }
    assert "hunter2" not in Path(app.config["TELEMETRY_EVENTS_LOG"]).read_text()


@pytest.mark.parametrize(
    ("authorization", "compared"),
    [
        pytest.param(None, False, id="missing"),
        pytest.param("", False, id="empty"),
        pytest.param("Bearer", True, id="scheme-only"),
        pytest.param("Bearer ", True, id="empty-token"),
        pytest.param("Bearer wrong", True, id="wrong"),
        pytest.param(f"Bearer {TOKEN[:-1]}", True, id="one-character-short"),
        pytest.param(f"Bearer {TOKEN}x", True, id="one-character-long"),
        pytest.param(f"Bearer {TOKEN[:-1]}X", True, id="last-character-differs"),
        pytest.param(f"Bearer {TOKEN.upper()}", True, id="other-case"),
        pytest.param(f"Bearer {TOKEN} {TOKEN}", True, id="token-twice"),
        pytest.param(f"Bearer {TOKEN[:-1]}\u00e9", True, id="non-ascii"),
        pytest.param(f"Basic {TOKEN}", False, id="basic-scheme"),
        pytest.param(TOKEN, False, id="no-scheme"),
    ],
)
def test_wrong_bearer_token_is_refused_without_a_hint(make_app, read_events, monkeypatch, authorization, compared):
    calls = []
    compare_digest = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append((a, b)) or compare_digest(a, b))
    app = make_app({"TELEMETRY_INGEST_TOKEN": TOKEN})
    headers = {} if authorization is None else {"Authorization": authorization}

    response = app.test_client().post(LOG, json={"event_type": "chapter_visit"}, headers=headers)

    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"] == "Bearer"
    # The same answer whatever was wrong: nothing to learn from it.
    assert response.get_json() == {
        "type": "about:blank",
        "title": "Unauthorized",
        "status": 401,
        "detail": "A valid bearer token is required.",
    }
    assert bool(calls) == compared
    assert all(expected == TOKEN.encode() for _, expected in calls)
    assert read_events(app) == []


@pytest.mark.parametrize("authorization", [f"Bearer {TOKEN}", f"bearer   {TOKEN} "])
def test_right_bearer_token_is_accepted(make_app, read_events, authorization):
    app = make_app({"TELEMETRY_INGEST_TOKEN": TOKEN})

    response = app.test_client().post(
        LOG, json={"event_type": "chapter_visit"}, headers={"Authorization": authorization}
    )

    assert response.status_code == 202
    assert len(read_events(app)) == 1


def _exchange(port, request):
    """Send ``request`` (bytes) and return everything the server answers before it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        reply = b""
        while chunk := connection.recv(65536):
            reply += chunk
    return reply


@pytest.mark.gunicorn
def test_oversized_body_is_refused_before_it_is_all_sent(tmp_path):
    head = f"POST {LOG} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    start = b'{"event_type":"chapter_visit","payload":{"s":"' + b"x" * 4000
    # A 10 MiB body announced, 4 kB of it sent: the server must answer without the rest.
    announced = (head + f"Content-Length: {10 * 1024 * 1024}\r\n\r\n").encode() + start
    # Chunked, no length announced: 70 kB sent and never finished.
    chunk = b"x" * 7000
    chunked = (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + b"".join(
        b"%x\r\n%s\r\n" % (len(part), part) for part in [start, *[chunk] * 10]
    )

    with GunicornServer(tmp_path) as server:
        replies = [_exchange(server.port, request) for request in (announced, chunked)]
        exit_code = server.stop()

    for reply in replies:
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413 ")
        assert b"\r\ncontent-type: application/problem+json" in head.lower()
        assert json.loads(body)["status"] == 413
    assert exit_code == 0
    assert server.event_lines() == []


@pytest.mark.parametrize(
    ("extra", "status"),
    [pytest.param(b"", 202, id="exactly-the-limit"), pytest.param(b" ", 413, id="one-byte-over")],
)
def test_streamed_body_is_held_to_max_content_length(make_app, read_events, extra, status):
    app = make_app({"MAX_CONTENT_LENGTH": 1024})
    body = event(b'{"chapter_id":"ch-1"}').ljust(1024) + extra

    # Chunked, as gunicorn passes it on: no length, the server ends the stream.
    response = app.test_client().post(
        LOG,
        input_stream=io.BytesIO(body),
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )

    assert response.status_code == status
    assert len(read_events(app)) == (status == 202)


@pytest.mark.parametrize(("levels", "status"), [(30, 202), (31, 400)])
def test_a_body_may_nest_exactly_json_max_depth_levels(client, levels, status):
    # The body's object, its payload, then nested(levels): levels + 2 in all (JSON_MAX_DEPTH is 32).
    response = client.post(LOG, data=event(nested(levels)), content_type="application/json")

    assert response.status_code == status
