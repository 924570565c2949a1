"""The payload rules' pre-checks and the event line: a look at the line never misses what a walk would change."""

import json

import pytest
from app.analytics.analytics_models import AnalyticsEvent
from app.analytics.payload_rules import PayloadTooDeep, redact, redact_may_change
from app.analytics.schemas import BatchResults, BatchResultSchema
from app.analytics.scrubbing import may_hold_secrets, payload_classes, scrub
from hypothesis import given, settings
from hypothesis import strategies as st

MAX_DEPTH = 4

# Keys near the secret names (case, separators, non-ASCII look-alikes that match case-blind).
_KEYS = st.one_of(
    st.text(max_size=8),
    st.sampled_from(
        [
            "user_id",
            "chapter_id",
            "Password",
            "x-API-key",
            "api_key",
            "apikey",
            "api key",
            "accessToken",
            "client_secret",
            "AUTHORIZATION",
            "to\u212aen",
            "pa\u017fsword",
            "tok",
            "passwd",
        ]
    ),
)
_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=12)),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(_KEYS, children, max_size=3)),
    max_leaves=12,
)
_PAYLOADS = st.dictionaries(_KEYS, _VALUES, max_size=4)


def _line(payload):
    return AnalyticsEvent("error_event", payload).to_line()


@settings(max_examples=400, deadline=None)
@given(_PAYLOADS)
def test_the_redaction_pre_check_is_true_whenever_redact_changes_or_refuses_a_payload(payload):
    line = _line(payload)
    try:
        changed = json.dumps(redact(payload, MAX_DEPTH)) != json.dumps(payload)
    except PayloadTooDeep:
        changed = True
    if changed:
        assert redact_may_change(payload, line, payload_classes(line), MAX_DEPTH)


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        _KEYS,
        st.recursive(
            st.one_of(
                st.text(max_size=20),
                st.sampled_from(
                    [
                        "a@b.co",
                        "Bearer abc123def456",
                        "eyJhbGciOi.eyJzdWIi.sig",
                        "4111 1111 1111 1111",
                        "https://u:p@h.example/x",
                        "?token=abc",
                        "x@y",
                        "1234567890123",
                    ]
                ),
            ),
            lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(_KEYS, children, max_size=3)),
            max_leaves=8,
        ),
        max_size=4,
    )
)
def test_the_scrubbing_pre_check_is_true_whenever_scrub_changes_a_payload(payload):
    if scrub(payload) != payload:
        assert may_hold_secrets(payload_classes(_line(payload)))


@pytest.mark.parametrize(
    "payload, expected",
    [
        ({"user_id": "u-42", "chapter_id": "ch-3"}, False),
        # Without containers the keys decide: a value is never redacted.
        ({"note": "the token of thanks", "n": 1, "ok": True, "x": None}, False),
        ({"api-key": "k"}, True),
        ({"to\u212aen": "k"}, True),  # KELVIN SIGN matches "k" case-blind
        # With a container the line decides, and cannot tell a value from a key.
        ({"notes": ["the token of thanks"]}, True),
        ({"notes": ["to\u212aen"]}, True),  # on the line, a \u escape
        ({"notes": ["thanks"], "to": "k"}, False),
        ({"a": {"b": {"c": {"d": {}}}}}, False),  # as deep as MAX_DEPTH allows
        ({"a": {"b": {"c": {"d": {"e": {}}}}}}, True),
    ],
)
def test_the_redaction_pre_check_on_typical_payloads(payload, expected):
    line = _line(payload)
    assert redact_may_change(payload, line, payload_classes(line), MAX_DEPTH) is expected


@pytest.mark.parametrize("truncated", [False, True])
@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"a": [1, 2.5, None, True, {"x": 'é"\\\n\u2028'}]},
        {"k": "v"},
        # Flat payloads, which orjson encodes: each of these must still come out as json writes it.
        {"k": "".join(map(chr, range(128))), "n": 7, "b": False, "z": None},
        {"k": "caf\u00e9 \u2028 \u0085 \U0001f600"},
        {"k": "\ud800"},
        {"big": 2**64, "small": -(2**63) - 1, "edge": 2**63 - 1},
        {1: "int key", None: "null key", False: "bool key"},
        {"k": 1e16, "n": 0.1},
    ],
)
def test_an_event_line_is_its_dict_encoded_compact_and_ascii(payload, truncated):
    event = AnalyticsEvent("chapter_visit", payload, truncated=truncated)
    assert event.to_line() == json.dumps(event.to_dict(), separators=(",", ":"), ensure_ascii=True, allow_nan=False)


@pytest.mark.parametrize("value", [{"a": float("nan")}, {"a": {1, 2}}, {"a": float("inf"), "b": "flat"}])
def test_an_event_line_refuses_what_json_refuses(value):
    with pytest.raises((TypeError, ValueError)):
        AnalyticsEvent("chapter_visit", value).to_line()


@pytest.mark.parametrize(
    "result",
    [
        {"index": 0, "status": 202, "event_id": "0b6f3c1e-8d0a-4c57-9f43-2a1d9b8e7c65"},
        {
            "index": 1,
            "status": 422,
            "detail": "The event failed validation.",
            "errors": {"payload": {"user_id": ["Not a valid string."]}},
        },
        {"index": 2, "status": 413, "detail": "The event is too large: the line would be 9000 bytes."},
        {"index": 3, "status": 503, "detail": "The event was not accepted: the event sink is unavailable."},
    ],
)
def test_a_batch_result_passes_through_as_its_schema_would_dump_it(result):
    assert BatchResults().serialize("results", {"results": [result]}) == [BatchResultSchema().dump(result)]


_KEY = "k" * 40


@pytest.fixture(scope="module")
def keyed_app():
    from app import create_app

    return create_app({"TESTING": True, "TELEMETRY_USER_ID_KEY": _KEY, "JSON_MAX_DEPTH": MAX_DEPTH})


@settings(max_examples=300, deadline=None)
# error_event's own fields are type-checked; any other key is kept as sent.
@given(
    payload=st.dictionaries(
        st.one_of(_KEYS, st.just("user_id")).filter(
            lambda key: key not in {"error_type", "error_message", "chapter_id", "section_id"}
        ),
        _VALUES,
        max_size=4,
    )
)
def test_built_events_are_what_every_rule_applied_in_order_gives(keyed_app, payload):
    """The pre-checks only skip work: the event is the one the rules give, walked one after the other."""
    from app.analytics.payload_rules import pseudonymise
    from app.analytics.schemas import PAYLOAD_SCHEMAS

    with keyed_app.app_context():
        logger = keyed_app.extensions["event_logger"]
        try:
            expected = scrub(
                pseudonymise(redact(PAYLOAD_SCHEMAS["error_event"].load(payload), MAX_DEPTH), _KEY.encode())
            )
        except PayloadTooDeep:
            with pytest.raises(ValueError, match="nests deeper"):
                logger._build(logger._state(), "error_event", payload)
            return
        event, line = logger._build(logger._state(), "error_event", payload)
    assert event.payload == expected
    assert line == event.to_line()


def test_the_pre_check_looks_for_every_word_it_names():
    from app.analytics import payload_rules

    for word in payload_rules._SECRET_WORDS:
        # In a list: a payload with a container is judged by its line.
        payload = {"notes": [word]}
        line = _line(payload)
        assert redact_may_change(payload, line, payload_classes(line), MAX_DEPTH), word
