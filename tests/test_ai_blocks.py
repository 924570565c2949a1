"""The four AI block routes: placeholder answers, one ai_block_used event per 200."""

import pytest

PROBLEM = "application/problem+json"

ROUTES = {
    "ask-question": ({"question": "Why is the sky blue?"}, "Why is the sky blue?", "answer"),
    "explain-like-10": ({"concept": "photosynthesis"}, "photosynthesis", "explanation"),
    "quiz": ({"num_questions": 4}, None, "questions"),
    "diagram": ({"description": "the water cycle"}, "the water cycle", "diagram"),
}


@pytest.mark.parametrize("block_type", ROUTES)
def test_block_answers_placeholder_and_emits_one_event(client, events, block_type):
    fields, query, content_key = ROUTES[block_type]
    body = {"chapter_id": "ch-3", "section_id": "s-1", **fields}

    response = client.post(f"/api/ai/{block_type}", json=body, headers={"X-User-Id": "u-42"})

    assert response.status_code == 200
    reply = response.get_json()
    assert reply["placeholder"] is True
    assert "placeholder" in reply["notice"].lower()
    assert reply["block_type"] == block_type
    assert reply["chapter_id"] == "ch-3" and reply["section_id"] == "s-1"
    assert reply[content_key]
    (line,) = events()
    assert line["event_type"] == "ai_block_used"
    assert line["payload"] == {
        "user_id": "u-42",
        "chapter_id": "ch-3",
        "section_id": "s-1",
        "block_type": block_type,
        "query": query,
    }


def test_user_defaults_to_anonymous_and_section_is_optional(client, events):
    response = client.post("/api/ai/ask-question", json={"chapter_id": "ch-3", "question": "What?"})

    assert response.status_code == 200
    assert response.get_json()["section_id"] is None
    assert events()[0]["payload"] == {
        "user_id": "anonymous",
        "chapter_id": "ch-3",
        "block_type": "ask-question",
        "query": "What?",
    }


@pytest.mark.parametrize(("requested", "expected"), [(None, 3), (1, 1), (10, 10)])
def test_quiz_has_the_requested_number_of_questions(client, requested, expected):
    body = {"chapter_id": "ch-3"} if requested is None else {"chapter_id": "ch-3", "num_questions": requested}

    reply = client.post("/api/ai/quiz", json=body).get_json()

    assert reply["num_questions"] == expected
    assert len(reply["questions"]) == expected


@pytest.mark.parametrize(
    ("block_type", "body", "field"),
    [
        ("ask-question", {"question": "q"}, "chapter_id"),
        ("ask-question", {"chapter_id": "c"}, "question"),
        ("ask-question", {"chapter_id": "", "question": "q"}, "chapter_id"),
        ("ask-question", {"chapter_id": "c" * 129, "question": "q"}, "chapter_id"),
        ("ask-question", {"chapter_id": "c", "section_id": "", "question": "q"}, "section_id"),
        ("ask-question", {"chapter_id": "c", "question": ""}, "question"),
        ("ask-question", {"chapter_id": "c", "question": "q" * 2001}, "question"),
        ("ask-question", {"chapter_id": "c", "question": 5}, "question"),
        ("ask-question", {"chapter_id": "c", "question": "q", "model": "x"}, "model"),
        ("explain-like-10", {"chapter_id": "c"}, "concept"),
        ("explain-like-10", {"chapter_id": 1, "concept": "x"}, "chapter_id"),
        ("quiz", {"chapter_id": "c", "num_questions": 0}, "num_questions"),
        ("quiz", {"chapter_id": "c", "num_questions": 11}, "num_questions"),
        ("quiz", {"chapter_id": "c", "num_questions": "3"}, "num_questions"),
        ("quiz", {"chapter_id": "c", "num_questions": 2.5}, "num_questions"),
        ("quiz", {"chapter_id": "c", "num_questions": True}, "num_questions"),
        ("diagram", {"chapter_id": "c", "description": None}, "description"),
        ("diagram", {"chapter_id": "c", "description": "d" * 2001}, "description"),
    ],
)
def test_invalid_input_is_422_and_emits_nothing(client, events, block_type, body, field):
    response = client.post(f"/api/ai/{block_type}", json=body)

    assert response.status_code == 422
    assert response.mimetype == PROBLEM
    assert field in response.get_json()["errors"]
    assert events() == []


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        (b"{", "application/json", 400),
        (b"[]", "application/json", 400),
        (b'{"chapter_id": "c", "question": NaN}', "application/json", 400),
        (b"chapter_id=c", "application/x-www-form-urlencoded", 415),
    ],
)
def test_malformed_body_is_a_problem_and_emits_nothing(client, events, data, content_type, status):
    response = client.post("/api/ai/ask-question", data=data, content_type=content_type)

    assert response.status_code == status
    assert response.mimetype == PROBLEM
    assert events() == []


def test_failing_event_logger_does_not_change_the_answer(make_app, monkeypatch, read_events, caplog):
    from app.analytics import EventLogger

    def broken_log(self, event_type, payload=None):
        raise OSError("disk on fire")

    healthy_app = make_app()
    broken_app = make_app()
    body = {"chapter_id": "ch-3", "question": "Why?"}
    expected = healthy_app.test_client().post("/api/ai/ask-question", json=body)
    monkeypatch.setattr(EventLogger, "log", broken_log)

    response = broken_app.test_client().post("/api/ai/ask-question", json=body)

    assert response.status_code == 200
    assert response.get_json() == expected.get_json()
    assert read_events(broken_app) == []
    assert "disk on fire" in caplog.text
    with broken_app.app_context():
        assert broken_app.extensions["event_logger"].health()["events_dropped"] == 1


def test_full_sink_does_not_change_the_answer(stalled_app, caplog):
    app = stalled_app({"TELEMETRY_QUEUE_SIZE": 1})
    client = app.test_client()

    answers = [client.post("/api/ai/quiz", json={"chapter_id": "c"}) for _ in range(5)]

    assert [answer.status_code for answer in answers] == [200] * 5
    assert client.get("/api/telemetry/health").get_json()["events_dropped"] >= 2
    warnings = [record for record in caplog.records if "dropped" in record.getMessage()]
    assert len(warnings) == 1  # at most one warning per interval
