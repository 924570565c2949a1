"""Value scrubbing: what must go from a payload's strings, and what must stay exactly as sent."""

import base64
import json
import random
import uuid

import pytest
from app.analytics import scrubbing
from app.analytics.scrubbing import is_card_number, line_may_hold_secrets, scrub, scrub_text
from hypothesis import given, settings
from hypothesis import strategies as st

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


BASIC = base64.b64encode(b"reader.one:hunter2").decode()
# The kinds SPEC S11 added (issue 23), as they leak: in URLs, headers quoted in errors, prose.
COVERAGE = [
    ("reader.one%40school.example.org", "[EMAIL]"),
    ("/unsubscribe?email=reader.one%40school.example.org&list=2", "/unsubscribe?email=[EMAIL]&list=2"),
    (f"Authorization: Basic {BASIC}", "Authorization: Basic [REDACTED]"),
    (f"basic {BASIC} failed", "basic [REDACTED] failed"),
    (
        "/token?grant_type=refresh_token&refresh_token=8xLOxBtZp8&client_id=app&client_secret=s3cr3t-Value",
        "/token?grant_type=refresh_token&refresh_token=[REDACTED]&client_id=app&client_secret=[REDACTED]",
    ),
    ("/cb?code=SplxlOBeZQQYbYS6WxSbIA&state=af0ifjsldkj", "/cb?code=[REDACTED]&state=af0ifjsldkj"),
    ("/cb#id_token=abc.def.ghi&session_state=x", "/cb#id_token=[REDACTED]&session_state=x"),
    (
        "/auth?client_assertion=abc&code_verifier=dBjftJeZ4CVP&device_code=GmRhmhcxhwAz",
        "/auth?client_assertion=[REDACTED]&code_verifier=[REDACTED]&device_code=[REDACTED]",
    ),
    (
        "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20260101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
        "&X-Amz-Security-Token=IQoJb3JpZ2luX2VjEJr&X-Amz-Signature=fe5f80f77d5fa3beca038a248ff027d0445342fe",
        "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=[REDACTED]"
        "&X-Amz-Date=20260101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
        "&X-Amz-Security-Token=[REDACTED]&X-Amz-Signature=[REDACTED]",
    ),
    (
        "https://storage.googleapis.com/b/o?X-Goog-Algorithm=GOOG4-RSA-SHA256"
        "&X-Goog-Credential=sa%40p.iam.gserviceaccount.com%2F20260101&X-Goog-Signature=0a1b2c3d",
        "https://storage.googleapis.com/b/o?X-Goog-Algorithm=GOOG4-RSA-SHA256"
        "&X-Goog-Credential=[REDACTED]&X-Goog-Signature=[REDACTED]",
    ),
    (
        "https://acct.blob.core.windows.net/c/b.pdf?sv=2022-11-02&se=2026-01-01&sr=b&sp=r&sig=abc%2Bdef%3D",
        "https://acct.blob.core.windows.net/c/b.pdf?sv=2022-11-02&se=2026-01-01&sr=b&sp=r&sig=[REDACTED]",
    ),
    ("aws key AKIAIOSFODNN7EXAMPLE", "aws key [REDACTED]"),
    ("session ASIAY34FZKBOKMUTVV7A,", "session [REDACTED],"),
    ("ghp_" + "a1B2" * 9, "[REDACTED]"),
    ("token: gho_" + "Z" * 36, "token: [REDACTED]"),
    ("ghs_" + "0" * 36 + " in CI", "[REDACTED] in CI"),
    ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVW", "[REDACTED]"),
    ("stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc", "stripe [REDACTED]"),
    ("rk_live_" + "a1" * 12, "[REDACTED]"),
    ("maps AIzaSyA-1234567890abcdefghijklmnopqrstu", "maps [REDACTED]"),
    ("xoxb-123456789012-1234567890123-abcdefghijklmnopqrstuvwx", "[REDACTED]"),
    ("xoxp-1234-5678-abcdef0123", "[REDACTED]"),
    ("I typed password=hunter2, then it failed", "I typed password=[REDACTED], then it failed"),
    ("secret=abc123.", "secret=[REDACTED]."),
    ("(api_key=abc123)", "(api_key=[REDACTED])"),
    ("a NUL \x00 and reader@x.org, reader%40x.org", "a NUL \x00 and [EMAIL], [EMAIL]"),
]


@pytest.mark.parametrize(("sent", "written"), COVERAGE)
def test_every_kind_s11_lists_is_replaced(sent, written):
    assert scrub_text(sent) == written


@pytest.mark.parametrize(("sent", "written"), COVERAGE)
def test_the_line_check_sees_every_kind_s11_lists(sent, written):
    line = '{"event_id":"12345678-1234-1234-1234-123456789012","payload":' + json.dumps({"q": sent}) + "}"
    assert line_may_hold_secrets(line)


@pytest.mark.parametrize(
    "ordinary",
    [
        "basic ideas of algebra",
        "Basic internationalization",
        "Basic QUJDRA==",  # base64, but of no "user:password"
        "error code=404 key=value sig=1",  # these names are secrets only in a URL's query
        "x=1 and y=2",
        "see Asia and AKIA",
        "ghost_town",
        "sk_live_short",
        "xox",
        "100%",
        "mailto%3Areader",
    ],
)
def test_near_misses_of_the_new_kinds_stay_as_sent(ordinary):
    assert scrub_text(ordinary) == ordinary


# Published test card numbers (Stripe, Adyen, Braintree, PayPal): one or more for every network whose
# ranges scrubbing.py lists.
TEST_CARDS = {
    "Visa": ["4111111111111111", "4242424242424242", "4012888888881881", "4000056655665556", "4222222222222"],
    "Mastercard": ["5555555555554444", "5105105105105100", "2223003122003222", "5200828282828210"],
    "American Express": ["378282246310005", "371449635398431", "378734493671000"],
    "Discover": ["6011111111111117", "6011000990139424", "6011981111111113", "6445644564456445"],
    "Diners Club": ["30569309025904", "38520000023237", "36227206271667", "3056930009020004"],
    "JCB": ["3530111333300000", "3566002020360505", "3566111111111113"],
    "UnionPay": ["6200000000000005", "6205500000000000004", "6250941006528599"],
    "Maestro": ["6759649826438453", "6304000000000000"],
    "Mir": ["2201382000000013"],
    "RuPay": ["6073849700004947"],
    "Elo": ["5066991111111118", "6362970000457013"],
    "Hipercard": ["6062828888666688"],
    "Dankort": ["5019717010103742"],
    "UATP": ["135412345678911"],
}


@pytest.mark.parametrize(
    ("network", "number"), [(network, number) for network, numbers in TEST_CARDS.items() for number in numbers]
)
def test_every_networks_test_card_numbers_are_caught(network, number):
    # Grouped as printed on the card: 4-3-3-3, 4-6-4, 4-6-5, else fours.
    sizes = {13: (4, 3, 3, 3), 14: (4, 6, 4), 15: (4, 6, 5)}.get(len(number), (4,) * 5)
    groups, start = [], 0
    for size in sizes:
        groups.append(number[start : start + size])
        start += size
    grouped = " ".join(group for group in groups if group)
    assert is_card_number(number), network
    assert scrub_text(f"card {number}.") == "card [CARD]."
    assert scrub_text(grouped) == "[CARD]"
    assert scrub_text(grouped.replace(" ", "-")) == "[CARD]"


def _isbn13(stem):
    digits = f"{stem:012d}"
    check = -sum(int(digit) * (3 if position % 2 else 1) for position, digit in enumerate(digits)) % 10
    return digits + str(check)


def _isbn10(stem):
    digits = f"{stem:09d}"
    check = sum(int(digit) * (10 - position) for position, digit in enumerate(digits)) * 10 % 11
    return digits + ("X" if check == 10 else str(check))


def _ordinary_corpus():
    """Values a textbook's events hold, by kind: 19,000 of them."""
    rng = random.Random(23)
    start_ms = 1_764_979_200_000  # 2025-12-06
    return {
        # The case: 1,000 consecutive milliseconds, as strings.
        "millisecond timestamps": [str(start_ms + n) for n in range(1000)]
        + [str(rng.randrange(1_500_000_000_000, 2_000_000_000_000)) for _ in range(2000)],
        "second timestamps": [str(rng.randrange(1_500_000_000, 2_000_000_000)) for _ in range(1000)],
        "microsecond timestamps": [
            str(rng.randrange(1_500_000_000_000_000, 2_000_000_000_000_000)) for _ in range(1000)
        ],
        "ISBN-13": [_isbn13(rng.randrange(978_000_000_000, 980_000_000_000)) for _ in range(2000)],
        "ISBN-13, hyphenated": [
            "-".join((isbn[:3], isbn[3], isbn[4:7], isbn[7:12], isbn[12]))
            for isbn in (_isbn13(rng.randrange(978_000_000_000, 980_000_000_000)) for _ in range(1000))
        ],
        "ISBN-10": [_isbn10(rng.randrange(0, 1_000_000_000)) for _ in range(1000)],
        "order numbers": [f"ORD-{rng.randrange(10**12, 10**13)}" for _ in range(1000)]
        + [str(rng.randrange(10**9, 10**12)) for _ in range(1000)]
        + [
            f"{rng.randrange(100, 1000)}-{rng.randrange(10**6, 10**7)}-{rng.randrange(10**6, 10**7)}"
            for _ in range(500)
        ],
        "invoice numbers": [f"INV-2026-{n:07d}" for n in range(500)] + [f"2026{n:09d}" for n in range(1000)],
        "phone numbers": [f"+1 {rng.randrange(200, 999)} 555 {rng.randrange(0, 10000):04d}" for _ in range(500)]
        + [f"+44 20 {rng.randrange(1000, 9999)} {rng.randrange(1000, 9999)}" for _ in range(500)]
        + [f"+{rng.randrange(10**10, 10**14)}" for _ in range(500)]
        + [f"00{rng.randrange(10**10, 10**13)}" for _ in range(500)],
        "chapter and section ids": [f"ch-{n}" for n in range(500)]
        + [f"ch-2026-{n:04d}-{n % 97:04d}" for n in range(500)]
        + [f"s-{n}.{n % 13}.{n % 7}" for n in range(500)],
        "UUIDs": [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(1500)],
        "version strings": [
            f"{rng.randrange(0, 30)}.{rng.randrange(0, 100)}.{rng.randrange(0, 10000)}" for _ in range(500)
        ],
        "prose with numbers": [
            f"In {rng.randrange(1900, 2030)}, {rng.randrange(1, 10**6):,} readers scored {rng.randrange(0, 100)}% "
            f"on quiz {rng.randrange(1, 40)} of chapter {rng.randrange(1, 30)} (page {rng.randrange(1, 900)})."
            for _ in range(500)
        ],
    }


# Changed values of the corpus, each explained: none so far.
EXPLAINED_CHANGES = {}


def test_ordinary_values_come_through_unchanged():
    corpus = _ordinary_corpus()
    values = [value for values in corpus.values() for value in values]
    changed = {value: scrub_text(value) for value in values if scrub_text(value) != value}
    assert len(values) == 19_000
    assert set(changed) <= set(EXPLAINED_CHANGES), changed
    assert len(changed) <= len(values) / 1000


def test_consecutive_millisecond_timestamps_are_not_cards():
    # 100 of these 1,000 pass the Luhn check; no card network issues 13-digit numbers starting with 1.
    stamps = [str(1_764_979_200_000 + n) for n in range(1000)]
    assert sum(is_card_number(stamp) is False and _luhn(stamp) for stamp in stamps) == 100
    assert [scrub_text(stamp) for stamp in stamps] == stamps


def _luhn(digits):
    total = 0
    for position, digit in enumerate(reversed(digits)):
        value = int(digit) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


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
    [
        "a@" * 30000,
        "a@" + "a." * 30000 + "1",
        "1" * 60000,
        "1 " * 30000,
        "?token=" * 9000,
        "bearer " * 9000,
        "basic " * 10000,
        "Basic QTpCQTpC " * 4000,
        "a%40" * 15000,
        "x=" * 30000,
        "password=" * 6000,
        "eyJ." * 15000,
        "eyJa.eyJ" * 7500,
        "AKIA" * 15000,
        "ghp_" * 15000,
        "a://" * 15000,
        "a://a@" * 10000,
        "4111111111111111 " * 3500,
    ],
)
def test_hostile_text_is_scrubbed_in_bounded_time(hostile):
    # Linear patterns: a 60 KB body (the most a request holds) costs milliseconds, not minutes.
    assert isinstance(scrub_text(hostile), str)


@settings(max_examples=300, deadline=None)
@given(
    text=st.lists(
        st.sampled_from(["a", "b1", ".", "-", "_", "+", "@", "%40", " ", "\x00", "cd.ef", "x@y.zz", "é", "Ünï"]),
        max_size=16,
    ).map("".join)
)
def test_short_and_ascii_texts_lose_their_addresses_as_long_unicode_ones_do(text):
    # Short texts with one "@" take the one pattern, and ASCII texts the patterns compiled for ASCII,
    # to cost less: the same addresses go as through the marks, the reversals and the Unicode patterns.
    unicode_email, unicode_domain, unicode_encoded_domain, unicode_local_part = scrubbing._EMAIL_PATTERNS
    marked, found = unicode_domain.subn(scrubbing._MARK, text)
    marked, encoded = unicode_encoded_domain.subn(scrubbing._MARK, marked)
    expected = (
        unicode_email.sub(scrubbing.EMAIL, text)
        if scrubbing._MARK in text
        else unicode_local_part.sub(scrubbing._REVERSED_EMAIL, marked[::-1])[::-1]
        if found + encoded
        else text
    )

    assert scrubbing._emails_scrubbed(text) == expected


@pytest.mark.parametrize(
    ("sent", "written"),
    [
        ("Basic QTpCQTpC", "Basic [REDACTED]"),
        ("xoxb-1234567890", "[REDACTED]"),
        ("Bearer abcdefg1", "Bearer [REDACTED]"),
        ("4222222222222", "[CARD]"),
        ("a@b.cd", "[EMAIL]"),
    ],
)
def test_the_shortest_secret_of_each_kind_is_scrubbed(sent, written):
    # Shorter texts skip the passes for longer kinds: each kind's shortest form still goes.
    assert scrub_text(sent) == written
