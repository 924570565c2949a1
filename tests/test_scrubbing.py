"""Value scrubbing: what must go from a payload's strings, and what must stay exactly as sent."""

import pytest
from app.analytics.scrubbing import line_may_hold_secrets, scrub, scrub_text

JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"


@pytest.mark.parametrize(
    ("sent", "written"),
    [
        ("failed near reader.one+tag@school.example.org", "failed near [EMAIL]"),
        ("Reader@School.Example.ORG wrote", "[EMAIL] wrote"),
        ("mailto:reader@x.org.", "mailto:[EMAIL]."),
        ("'reader@x.org'", "'[EMAIL]'"),
        ("?email=reader@x.org", "?email=[EMAIL]"),
        ("Authorization: Bearer abc123def456ghi789", "Authorization: Bearer [REDACTED]"),
        ("bearer tok_live_abcdefgh", "bearer [REDACTED]"),
        ("BEARER abcdefghijklmnopqrstuvwxyz", "BEARER [REDACTED]"),
        (f"token {JWT} end", "token [REDACTED] end"),
        (f"Bearer {JWT}", "Bearer [REDACTED]"),
        ("card 4111 1111 1111 1111 ok", "card [CARD] ok"),
        ("4111-1111-1111-1111", "[CARD]"),
        ("4111111111111111", "[CARD]"),
        ("378282246310005", "[CARD]"),
        ("3782 822463 10005", "[CARD]"),
        ("6011111111111117.", "[CARD]."),
        ("https://bob:hunter2pass@files.example.com/x", "https://[REDACTED]@files.example.com/x"),
        ("https://bob:p@ss@files.example.com/x", "https://[REDACTED]@files.example.com/x"),
        ("https://ghp_abc123@github.example/x", "https://[REDACTED]@github.example/x"),
        ("postgres://app:pw@db.internal:5432/x", "postgres://[REDACTED]@db.internal:5432/x"),
        (
            "https://api.example.com/v1/data?page=2&access_token=tok_abc123",
            "https://api.example.com/v1/data?page=2&access_token=[REDACTED]",
        ),
        ("https://x.example/cb#access_token=abc&state=1", "https://x.example/cb#access_token=[REDACTED]&state=1"),
        ("/s3/file?X=1&Signature=abc%2Bdef&Expires=9", "/s3/file?X=1&Signature=[REDACTED]&Expires=9"),
        (
            "?token=a&id_token=b&key=c&api_key=d&password=e&secret=f&sig=g&code=h",
            "?token=[REDACTED]&id_token=[REDACTED]&key=[REDACTED]&api_key=[REDACTED]"
            "&password=[REDACTED]&secret=[REDACTED]&sig=[REDACTED]&code=[REDACTED]",
        ),
    ],
)
def test_secrets_are_replaced(sent, written):
    assert scrub_text(sent) == written


@pytest.mark.parametrize(
    "ordinary",
    [
        "ch-3",
        "ch-2026-0001-0042",
        "s-1.2",
        "5c1f0f0e-5f0e-4c39-9d4e-2f9b8f6f2d7a",
        "12345678-1234-1234-1234-123456789012",
        "2026-11-23",
        "2026-11-23T19:30:00.123456Z",
        "2026-11-23 19:30:00+01:00",
        "123456789012",
        "4111 1111 1111 1112",
        "4111111111111112",
        "pi is 3.14159265358979323",
        "We had 1234 5678 9012 readers in 2026, up 12%.",
        "Call +44 20 7946 0958 at 9.30",
        "https://example.com/docs?page=2&lang=en",
        "https://example.com/a/b#section-3",
        "the bearer of bad news",
        "Bearer 2",
        "x = y + 2 and a==b",
        "user at example dot org",
        "u_0123456789abcdef0123456789abcdef",
        "Why is the sky blue?",
        "",
    ],
)
def test_ordinary_values_stay_exactly_as_sent(ordinary):
    assert scrub_text(ordinary) == ordinary


def test_every_string_at_any_depth_is_scrubbed_and_other_values_kept():
    payload = {
        "error_message": "mail reader@school.example.org",
        "count": 4111111111111111,
        "ok": True,
        "none": None,
        "nested": {"list": ["4111 1111 1111 1111", {"url": "https://u:p@h.example/x"}], "id": "ch-3"},
    }
    assert scrub(payload) == {
        "error_message": "mail [EMAIL]",
        "count": 4111111111111111,
        "ok": True,
        "none": None,
        "nested": {"list": ["[CARD]", {"url": "https://[REDACTED]@h.example/x"}], "id": "ch-3"},
    }


@pytest.mark.parametrize(
    "payload",
    [
        '{"q":"a@b.example"}',
        '{"q":"?key=1"}',
        '{"q":"eyJhbGciOi.x.y"}',
        '{"q":"BeArEr x"}',
        '{"q":"4111 1111 1111 1111"}',
        '{"q":"4111-1111-1111-1111"}',
    ],
)
def test_the_line_check_sees_every_kind(payload):
    line = '{"event_id":"12345678-1234-1234-1234-123456789012","timestamp":"x","payload":' + payload + "}"
    assert line_may_hold_secrets(line)


def test_the_line_check_passes_ordinary_lines_and_ignores_the_server_fields():
    line = (
        '{"event_id":"12345678-1234-1234-1234-123456789012","event_type":"chapter_visit",'
        '"timestamp":"2026-11-23T19:30:00.123456Z","payload":{"user_id":"u-42","chapter_id":"ch-3",'
        '"timestamp":"2026-11-23T19:30:00.123456Z"}}'
    )
    assert not line_may_hold_secrets(line)


@pytest.mark.parametrize(
    "hostile",
    ["a@" * 30000, "a@" + "a." * 30000 + "1", "1" * 60000, "1 " * 30000, "?token=" * 9000, "bearer " * 9000],
)
def test_hostile_text_is_scrubbed_in_bounded_time(hostile):
    # Linear patterns: a 60 KB body (the most a request holds) costs milliseconds, not minutes.
    assert isinstance(scrub_text(hostile), str)
