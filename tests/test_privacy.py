"""Readers' privacy: scrubbed values, pseudonyms, Global Privacy Control, nothing about the reader."""

import hashlib
import hmac
import http.client
import json
import logging

import pytest
from app import create_app
from app.analytics import event_logger as event_logger_module
from app.config import ConfigError
from gunicorn_server import GunicornServer

KEY = "k3y-for-tests-0123456789abcdefghijklmnop"
OTHER_KEY = "another-key-for-tests-0123456789abcdefgh"
CARD = "4111 1111 1111 1111"
SECRETS_MESSAGE = (
    "failed near reader.one+tag@school.example.org with Bearer abc123def456ghi789, card "
    f"{CARD}, https://bob:hunter2pass@files.example.com/x and "
    "https://api.example.com/v1/data?page=2&access_token=tok_abc123"
)
SCRUBBED_MESSAGE = (
    "failed near [EMAIL] with Bearer [REDACTED], card [CARD], https://[REDACTED]@files.example.com/x and "
    "https://api.example.com/v1/data?page=2&access_token=[REDACTED]"
)
QUESTION = "My e-mail is student@school.example.org, why is the sky blue?"

# A distinctive value for every header a reader's browser could send.
MARKERS = {
    "User-Agent": "Mozilla/5.0 MarkerAgent-7f3a",
    "Referer": "https://pages.example/chapter?marker=ref-7f3a",
    "Cookie": "session=cookie-7f3a; theme=dark",
    "X-Forwarded-For": "203.0.113.77",
    "X-Real-Ip": "198.51.100.77",
    "Forwarded": "for=192.0.2.77",
    "Accept-Language": "xx-MARKERLANG-7f3a",
    "X-Custom-Marker": "custom-header-7f3a",
}
CLIENT_ADDRESS = "127.0.0.73"


def pseudonym(user_id, key=KEY):
    return "u_" + hmac.new(key.encode(), user_id.encode(), hashlib.sha256).hexdigest()[:32]


def _payloads(lines):
    return [line["payload"] for line in lines]


# --- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["", "short", "x" * 31, 12345])
def test_a_short_key_stops_startup_with_one_line_that_does_not_quote_it(key):
    with pytest.raises(ConfigError) as raised:
        create_app({"TESTING": True, "TELEMETRY_USER_ID_KEY": key})
    message = str(raised.value)
    assert "TELEMETRY_USER_ID_KEY must be at least 32 characters" in message
    assert "\n" not in message
    if key:
        assert str(key) not in message


def test_a_key_from_the_environment_is_used(monkeypatch, make_app, read_events):
    monkeypatch.setenv("FLASK_TELEMETRY_USER_ID_KEY", KEY)
    app = make_app()
    app.test_client().post("/api/telemetry/log", json={"event_type": "chapter_visit", "payload": {"user_id": "u-42"}})
    assert _payloads(read_events(app)) == [{"user_id": pseudonym("u-42")}]


def test_the_key_is_never_shown(make_app, capsys, caplog):
    app = make_app({"TELEMETRY_USER_ID_KEY": KEY})
    client = app.test_client()
    health = client.get("/api/telemetry/health")
    document = client.get("/api/openapi.json")
    cli = app.test_cli_runner().invoke(args=["telemetry", "health"])
    shown = [
        repr(app.config),
        str(app.config["TELEMETRY_USER_ID_KEY"]),
        health.get_data(as_text=True),
        document.get_data(as_text=True),
        cli.output,
        caplog.text,
        *capsys.readouterr(),
    ]
    assert not [text for text in shown if KEY in text]


@pytest.mark.parametrize(("name", "value"), [("TELEMETRY_SCRUB_VALUES", "maybe"), ("TELEMETRY_HONOR_GPC", "2")])
def test_privacy_switches_must_be_booleans(name, value):
    with pytest.raises(ConfigError, match=name):
        create_app({"TESTING": True, name: value})


# --- scrubbing, in every event -----------------------------------------------------------------


def test_values_are_scrubbed_on_log_and_batch(client, events):
    log = client.post(
        "/api/telemetry/log",
        json={"event_type": "error_event", "payload": {"error_message": SECRETS_MESSAGE, "extra": {"card": [CARD]}}},
    )
    batch = client.post(
        "/api/telemetry/batch",
        json={
            "events": [
                {"event_type": "error_event", "payload": {"error_message": SECRETS_MESSAGE}},
                {"event_type": "ai_block_used", "payload": {"query": QUESTION, "chapter_id": "ch-2026-0001-0042"}},
            ]
        },
    )
    assert (log.status_code, batch.status_code) == (202, 202)
    assert _payloads(events()) == [
        {"error_message": SCRUBBED_MESSAGE, "extra": {"card": ["[CARD]"]}},
        {"error_message": SCRUBBED_MESSAGE},
        {"query": "My e-mail is [EMAIL], why is the sky blue?", "chapter_id": "ch-2026-0001-0042"},
    ]


def test_values_are_scrubbed_in_app_and_in_the_ai_blocks_and_the_error_handler(app, client, events):
    @app.get("/api/explode")
    def explode():
        raise RuntimeError(f"lookup failed for reader@school.example.org ({CARD})")

    with app.app_context():
        app.extensions["event_logger"].log("error_event", {"error_message": SECRETS_MESSAGE})
    answered = client.post("/api/ai/ask-question", json={"chapter_id": "ch-3", "question": QUESTION})
    failed = client.get("/api/explode")
    assert (answered.status_code, failed.status_code) == (200, 500)
    assert QUESTION in answered.get_json()["question"]  # the answer is the reader's, unchanged
    lines = events()
    assert lines[0]["payload"] == {"error_message": SCRUBBED_MESSAGE}
    assert lines[1]["payload"]["query"] == "My e-mail is [EMAIL], why is the sky blue?"
    assert lines[2]["payload"]["error_message"] == "lookup failed for [EMAIL] ([CARD])"


def test_scrubbing_runs_after_redaction_and_before_the_size_cap(app, events):
    with app.app_context():
        app.extensions["event_logger"].log(
            "error_event", {"error_message": "reader@school.example.org " * 600, "password": "a@b.example"}
        )
    (line,) = events()
    assert line["truncated"] is True
    assert line["payload"]["password"] == "[REDACTED]"
    assert line["payload"]["error_message"].startswith("[EMAIL] [EMAIL] ")
    assert "@" not in json.dumps(line)


def test_an_http_event_too_large_as_sent_is_refused_without_being_scrubbed(client, events, monkeypatch):
    # SPEC S13: its outcome is decided by its size, so the scrubbers never see it, on /log or in a batch.
    scrubbed = []
    monkeypatch.setattr(event_logger_module, "scrub", lambda payload: scrubbed.append(payload) or payload)
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0." + "s" * 5000
    event = {"event_type": "error_event", "payload": {"error_message": token}}
    log = client.post("/api/telemetry/log", json=event)
    batch = client.post("/api/telemetry/batch", json={"events": [event, {"event_type": "chapter_visit"}]})
    assert log.status_code == 413
    assert [result["status"] for result in batch.get_json()["results"]] == [413, 202]
    assert scrubbed == [] and _payloads(events()) == [{}]


def test_an_http_event_that_grows_past_the_limit_once_scrubbed_is_refused(client, events):
    message = "a@b.co " * 540  # each address becomes "[EMAIL]", one character longer
    reply = client.post("/api/telemetry/log", json={"event_type": "error_event", "payload": {"error_message": message}})
    assert reply.status_code == 413
    assert events() == []


# --- scrub, then cut (SPEC S11) ----------------------------------------------------------------

# A 216-character ID token: cut to 128 characters it loses its signature, and its claims are readable.
ID_TOKEN = (
    "eyJhbGciOiAiUlMyNTYiLCAidHlwIjogIkpXVCIsICJraWQiOiAiazEifQ."
    "eyJzdWIiOiAiNDcxMSIsICJlbWFpbCI6ICJyZWFkZXIuc2V2ZW5Ac2Nob29sLmV4YW1wbGUub3JnIiwgImlhdCI6IDE3NjQ5NzkyMDB9."
    + "s"
    * 52
)
CLAIMS = ID_TOKEN.split(".")[1]


def _holds_claims(line):
    text = json.dumps(line)
    return any(CLAIMS[start : start + 12] in text for start in range(0, len(CLAIMS) - 12, 4))


def test_a_long_x_user_id_is_scrubbed_before_it_is_cut(client, events):
    assert len(ID_TOKEN) == 216
    answered = client.post(
        "/api/ai/quiz", json={"chapter_id": "ch-3"}, headers={"X-User-Id": ID_TOKEN + " reader@school.example.org"}
    )
    assert answered.status_code == 200
    (line,) = events()
    assert line["payload"]["user_id"] == "[REDACTED] [EMAIL]"
    assert not _holds_claims(line)


def test_a_long_x_user_id_is_cut_to_128_characters(client, events):
    client.post("/api/ai/quiz", json={"chapter_id": "ch-3"}, headers={"X-User-Id": "u" * 300})
    assert events()[0]["payload"]["user_id"] == "u" * 128


def test_a_long_exception_text_is_scrubbed_before_it_is_cut(app, client, events):
    @app.get("/api/explode")
    def explode():
        raise RuntimeError("x" * 440 + " token " + ID_TOKEN + " for reader.seven@school.example.org")

    assert client.get("/api/explode").status_code == 500
    (line,) = events()
    message = line["payload"]["error_message"]
    assert message == "x" * 440 + " token [REDACTED] for [EMAIL]"
    assert not _holds_claims(line)


def test_the_size_cap_cuts_scrubbed_text(app, events):
    with app.app_context():
        app.extensions["event_logger"].log("error_event", {"error_message": "x" * 3900 + ID_TOKEN + "y" * 3000})
    (line,) = events()
    assert line["truncated"] is True
    assert not _holds_claims(line) and "eyJ" not in json.dumps(line)


def test_a_token_the_browser_cut_inside_its_claims_is_still_scrubbed(client, events):
    # The tracker cuts error messages to 500 characters before sending them.
    for end in (70, 100, 140):
        client.post(
            "/api/telemetry/log",
            json={"event_type": "error_event", "payload": {"error_message": "failed: " + ID_TOKEN[:end]}},
        )
    assert [line["payload"]["error_message"] for line in events()] == ["failed: [REDACTED]"] * 3


def test_scrubbing_can_be_turned_off(make_app, read_events):
    app = make_app({"TELEMETRY_SCRUB_VALUES": "false"})
    app.test_client().post(
        "/api/telemetry/log", json={"event_type": "error_event", "payload": {"error_message": SECRETS_MESSAGE}}
    )
    assert _payloads(read_events(app)) == [{"error_message": SECRETS_MESSAGE}]


# --- pseudonymous user ids ---------------------------------------------------------------------


@pytest.fixture
def keyed_app(make_app):
    return make_app({"TELEMETRY_USER_ID_KEY": KEY})


def test_every_user_id_written_is_a_pseudonym(keyed_app, read_events):
    client = keyed_app.test_client()
    client.post("/api/telemetry/log", json={"event_type": "chapter_visit", "payload": {"user_id": "u-42"}})
    client.post(
        "/api/telemetry/batch",
        json={
            "events": [
                {"event_type": "chapter_visit", "payload": {"user_id": "u-42", "chapter_id": "ch-3"}},
                {"event_type": "error_event", "payload": {"user_id": 42, "error_type": "E"}},
                {"event_type": "ai_block_used", "payload": {"user_id": "anonymous"}},
            ]
        },
    )
    client.post("/api/ai/quiz", json={"chapter_id": "ch-3"}, headers={"X-User-Id": "u-42"})
    client.post("/api/ai/quiz", json={"chapter_id": "ch-3"})
    with keyed_app.app_context():
        keyed_app.extensions["event_logger"].log("chapter_visit", {"user_id": "reader@school.example.org"})
    user_ids = [payload.get("user_id") for payload in _payloads(read_events(keyed_app))]
    assert user_ids == [
        pseudonym("u-42"),
        pseudonym("u-42"),
        pseudonym("42"),
        "anonymous",
        pseudonym("u-42"),
        "anonymous",
        # Keyed before scrubbing: an e-mail user id gets its own pseudonym, not that of "[EMAIL]".
        pseudonym("reader@school.example.org"),
    ]


def test_a_new_key_gives_new_pseudonyms(make_app, read_events):
    first, second = make_app({"TELEMETRY_USER_ID_KEY": KEY}), make_app({"TELEMETRY_USER_ID_KEY": OTHER_KEY})
    for app in (first, second):
        app.test_client().post(
            "/api/telemetry/log", json={"event_type": "chapter_visit", "payload": {"user_id": "u-42"}}
        )
    (old,), (new,) = _payloads(read_events(first)), _payloads(read_events(second))
    assert old["user_id"] == pseudonym("u-42") and new["user_id"] == pseudonym("u-42", OTHER_KEY)
    assert old != new


def test_without_a_key_user_ids_are_written_as_sent_but_scrubbed(client, events):
    client.post("/api/telemetry/log", json={"event_type": "chapter_visit", "payload": {"user_id": "u-42"}})
    client.post("/api/telemetry/log", json={"event_type": "chapter_visit", "payload": {"user_id": "a@b.example"}})
    assert [payload["user_id"] for payload in _payloads(events())] == ["u-42", "[EMAIL]"]


# --- Global Privacy Control --------------------------------------------------------------------

BLOCKS = [
    ("/api/ai/ask-question", {"chapter_id": "ch-3", "section_id": "s-1", "question": QUESTION}),
    ("/api/ai/explain-like-10", {"chapter_id": "ch-3", "concept": "photosynthesis"}),
    ("/api/ai/quiz", {"chapter_id": "ch-3", "num_questions": 2}),
    ("/api/ai/diagram", {"chapter_id": "ch-3", "description": "the water cycle"}),
]


@pytest.mark.parametrize(("path", "body"), BLOCKS)
def test_gpc_answers_as_always_and_records_no_reader(keyed_app, read_events, path, body):
    client = keyed_app.test_client()
    plain = client.post(path, json=body, headers={"X-User-Id": "u-42"})
    private = client.post(path, json=body, headers={"X-User-Id": "u-42", "Sec-GPC": "1"})
    assert private.status_code == plain.status_code == 200
    assert private.get_json() == plain.get_json()
    recorded, unrecorded = _payloads(read_events(keyed_app))
    assert recorded["user_id"] == pseudonym("u-42")
    assert unrecorded == {**recorded, "user_id": "anonymous", "query": None}


def test_gpc_can_be_ignored_by_configuration(make_app, read_events):
    app = make_app({"TELEMETRY_HONOR_GPC": False})
    app.test_client().post("/api/ai/explain-like-10", json=BLOCKS[1][1], headers={"X-User-Id": "u-1", "Sec-GPC": "1"})
    (payload,) = _payloads(read_events(app))
    assert (payload["user_id"], payload["query"]) == ("u-1", "photosynthesis")


@pytest.mark.parametrize("value", ["0", "", "yes"])
def test_only_gpc_1_is_an_opt_out(client, events, value):
    client.post("/api/ai/explain-like-10", json=BLOCKS[1][1], headers={"X-User-Id": "u-1", "Sec-GPC": value})
    (payload,) = _payloads(events())
    assert payload["user_id"] == "u-1"


def test_ingestion_routes_leave_gpc_to_the_tracker(client, events):
    reply = client.post(
        "/api/telemetry/log",
        json={"event_type": "ai_block_used", "payload": {"user_id": "u-1", "query": "q"}},
        headers={"Sec-GPC": "1"},
    )
    assert reply.status_code == 202
    assert _payloads(events()) == [{"user_id": "u-1", "query": "q"}]


# --- nothing else about the reader -------------------------------------------------------------


def _leaks(text):
    return [marker for marker in (*MARKERS.values(), "cookie-7f3a", "7f3a", CLIENT_ADDRESS) if marker in text]


def test_no_event_or_log_line_holds_the_readers_address_or_headers(make_app, read_events, caplog, capsys):
    app = make_app({"TELEMETRY_INGEST_TOKEN": "ingest-token-7f3a"})

    @app.get("/api/explode")
    def explode():
        raise RuntimeError("boom")

    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = CLIENT_ADDRESS
    headers = {**MARKERS, "Authorization": "Bearer ingest-token-7f3a", "X-User-Id": "u-1"}
    caplog.set_level(logging.DEBUG)
    answers = [
        client.post("/api/telemetry/log", json={"event_type": "chapter_visit", "payload": {}}, headers=headers),
        client.post("/api/telemetry/batch", json={"events": [{"event_type": "chapter_visit"}]}, headers=headers),
        client.post("/api/telemetry/log", json={"event_type": "nope"}, headers=headers),
        client.post("/api/telemetry/log", json={"event_type": "chapter_visit"}, headers={**MARKERS}),
        client.post(BLOCKS[0][0], json=BLOCKS[0][1], headers=headers),
        client.get("/api/explode", headers=headers),
        client.get("/api/telemetry/health", headers=headers),
        client.get("/api/nowhere", headers=headers),
    ]
    assert [answer.status_code for answer in answers] == [202, 202, 422, 401, 200, 500, 200, 404]
    lines = read_events(app)
    assert len(lines) == 4
    written = "\n".join([json.dumps(lines), caplog.text, *capsys.readouterr()])
    assert _leaks(written) == []


# --- proven over HTTP under gunicorn -----------------------------------------------------------


@pytest.fixture(scope="module")
def gunicorn(tmp_path_factory):
    server = GunicornServer(tmp_path_factory.mktemp("privacy"), workers=2, env={"FLASK_TELEMETRY_USER_ID_KEY": KEY})
    with server:
        yield server


def _send_from_reader(server, method, path, body=None, headers=None):
    """One request from another loopback address than the server's, with every marker header."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10, source_address=(CLIENT_ADDRESS, 0))
    try:
        data = json.dumps(body) if body is not None else None
        connection.request(
            method,
            path,
            body=data,
            headers={
                **MARKERS,
                "Content-Type": "application/json",
                **(headers or {}),
            },
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


@pytest.mark.gunicorn
def test_gunicorn_writes_scrubbed_pseudonymous_events_and_nothing_about_the_reader(gunicorn):
    send = lambda *args, **kwargs: _send_from_reader(gunicorn, *args, **kwargs)  # noqa: E731
    answers = [
        send(
            "POST", "/api/telemetry/log", {"event_type": "error_event", "payload": {"error_message": SECRETS_MESSAGE}}
        ),
        send(
            "POST",
            "/api/telemetry/batch",
            {
                "events": [
                    {"event_type": "chapter_visit", "payload": {"user_id": "u-42", "chapter_id": "ch-3"}},
                    {"event_type": "chapter_visit", "payload": {"user_id": "anonymous"}},
                ]
            },
        ),
        send("POST", *BLOCKS[0], headers={"X-User-Id": "u-42"}),
        send("POST", *BLOCKS[0], headers={"X-User-Id": "u-42", "Sec-GPC": "1"}),
        send("POST", "/api/telemetry/log", {"event_type": "nope"}),
        send("GET", "/api/telemetry/health"),
    ]
    assert [status for status, _ in answers] == [202, 202, 200, 200, 422, 200]
    assert answers[2][1] == answers[3][1]
    gunicorn.stop()

    payloads = _payloads(gunicorn.event_lines())
    assert payloads == [
        {"error_message": SCRUBBED_MESSAGE},
        {"user_id": pseudonym("u-42"), "chapter_id": "ch-3"},
        {"user_id": "anonymous"},
        {
            "user_id": pseudonym("u-42"),
            "chapter_id": "ch-3",
            "section_id": "s-1",
            "block_type": "ask-question",
            "query": "My e-mail is [EMAIL], why is the sky blue?",
        },
        {
            "user_id": "anonymous",
            "chapter_id": "ch-3",
            "section_id": "s-1",
            "block_type": "ask-question",
            "query": None,
        },
    ]
    written = gunicorn.stdout_path.read_text() + gunicorn.stderr_text() + json.dumps(answers)
    assert _leaks(written) == []
    assert KEY not in written
