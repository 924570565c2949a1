"""End to end under a real gunicorn: an event posted over HTTP is a line on stdout."""

import pytest
from gunicorn_server import GunicornServer

pytestmark = pytest.mark.gunicorn


def test_posted_event_is_a_line_on_gunicorn_stdout(tmp_path):
    with GunicornServer(tmp_path) as server:
        status, _, reply = server.request(
            "POST", "/api/telemetry/log", {"event_type": "chapter_visit", "payload": {"chapter_id": "ch-1"}}
        )
        answered, _, answer = server.request(
            "POST", "/api/ai/ask-question", {"chapter_id": "ch-1", "question": "Why?"}, {"X-User-Id": "u-7"}
        )
        exit_code = server.stop()

    assert status == 202 and answered == 200 and answer["placeholder"] is True
    assert exit_code == 0
    lines = server.event_lines()
    assert [line["event_type"] for line in lines if line["event_id"] == reply["event_id"]] == ["chapter_visit"]
    (used,) = [line for line in lines if line["event_type"] == "ai_block_used"]
    assert used["payload"] == {"user_id": "u-7", "chapter_id": "ch-1", "block_type": "ask-question", "query": "Why?"}
    assert "Booting worker" in server.stderr_text()
