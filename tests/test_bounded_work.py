"""Bounded work (SPEC S13): a body dense in arrays, objects or items is refused before it is parsed."""

import json

import pytest
from app import create_app
from app.analytics.event_logger import EventTooLarge
from app.config import ConfigError
from hypothesis import example, given, settings
from hypothesis import strategies as st

LOG = "/api/telemetry/log"
BATCH = "/api/telemetry/batch"


def event(payload):
    return {"event_type": "chapter_visit", "payload": payload}


@pytest.mark.parametrize(
    ("payload", "refusal"),
    [
        pytest.param({"l": [[]] * 3000}, "more than 2048 arrays and objects", id="wide-empty-lists"),
        pytest.param({"l": [{}] * 3000}, "more than 2048 arrays and objects", id="wide-empty-objects"),
        pytest.param({"l": [[[[[]]]]] * 600}, "more than 2048 arrays and objects", id="nested-and-wide"),
        pytest.param({"l": [1] * 5000}, "more than 2048 array elements and object members", id="numbers"),
        pytest.param({"l": ["@"] * 5000}, "more than 2048 array elements and object members", id="strings"),
        pytest.param({f"k{n}": 1 for n in range(5000)}, "more than 2048 array elements and object members", id="keys"),
        pytest.param({"l": [[1] * 50] * 100}, "more than 2048 array elements and object members", id="in-lists"),
    ],
)
def test_a_body_over_a_limit_is_refused_unparsed(make_app, read_events, monkeypatch, payload, refusal):
    app = make_app({"MAX_CONTENT_LENGTH": 1024 * 1024})
    parsed = []
    monkeypatch.setattr("app.json_body.orjson.loads", lambda text: parsed.append(text))

    response = app.test_client().post(LOG, data=json.dumps(event(payload)), content_type="application/json")

    assert response.status_code == 400
    assert refusal in json.loads(response.data)["detail"]
    assert parsed == []
    assert read_events(app) == []


def test_brackets_inside_strings_do_not_count(client, events):
    text = '[{"quoted \\" [still] {in} the string'
    response = client.post(LOG, json=event({"query": text * 60}))

    assert response.status_code == 202
    assert len(events()) == 1


def test_a_full_batch_of_ordinary_events_is_well_within_the_limit(client):
    body = {"events": [event({"chapter_id": f"ch-{n}", "scores": [1, 2], "meta": {"a": [1]}}) for n in range(100)]}

    response = client.post(BATCH, json=body)

    assert response.status_code == 202


def test_the_limit_is_configurable(make_app):
    app = make_app({"JSON_MAX_CONTAINERS": 16})

    small = app.test_client().post(LOG, json=event({"l": [[]] * 10}))
    large = app.test_client().post(LOG, json=event({"l": [[]] * 20}))

    assert small.status_code == 202
    assert large.status_code == 400


@pytest.mark.parametrize("name", ["JSON_MAX_CONTAINERS", "JSON_MAX_ITEMS"])
@pytest.mark.parametrize("value", [15, "many", 2_000_000])
def test_a_bad_limit_stops_startup(name, value, tmp_path):
    with pytest.raises(ConfigError, match=f"{name} must be an integer"):
        create_app({"TESTING": True, "TELEMETRY_EVENTS_LOG": str(tmp_path / "e.jsonl"), name: value})


@pytest.mark.parametrize(
    ("text", "items"),
    [
        pytest.param("[" + ",".join(["1"] * 16) + "]", 16, id="elements"),
        pytest.param("{" + ",".join(f'"k{n}": 1' for n in range(16)) + "}", 16, id="members"),
        pytest.param("[" + ",".join(["[]"] * 8) + "]", 16, id="empty-arrays-count-one"),
        pytest.param("[" + ",".join(['",[,]{,}"'] * 16) + "]", 16, id="commas-and-brackets-in-strings"),
        pytest.param("[" + ",".join(['"\\"\\\\,\\","'] * 16) + "]", 16, id="escaped-quotes-and-backslashes"),
        pytest.param("[[1,2,3],[4,5,6],[7,8,9],[10]]", 14, id="nested"),
    ],
)
def test_items_are_counted_outside_strings_up_to_the_limit(make_app, text, items):
    app = make_app({"JSON_MAX_ITEMS": 16})
    one_more = text[:-1] + (",1" if text[-2] != "[" else "1") + text[-1] if text[0] == "[" else None

    assert app.json.loads(text) == json.loads(text)
    if items == 16 and one_more:
        with pytest.raises(ValueError, match="more than 16 array elements and object members"):
            app.json.loads(one_more)


# Strings that hold what the byte-level checks look at: quotes, backslashes, brackets, colons.
_TRICKY_TEXT = st.text(alphabet='"\\[]{}:, aé\n\u2028😀', max_size=6)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TRICKY_TEXT
)
# Objects as lists of pairs, so that a key may come twice.
_JSON_VALUES = st.recursive(
    _SCALARS,
    lambda children: (
        st.lists(children, max_size=4).map(tuple)
        | st.lists(st.tuples(st.sampled_from(["a", '"', "\\", "]:", "é"]) | _TRICKY_TEXT, children), max_size=4)
    ),
    max_leaves=32,
)


def _text(value, spaced, escaped):
    """``value`` as JSON text (a tuple as an array, a list of pairs as an object).

    Spaced or compact; with ``escaped``, every character of a string as a ``\\u`` escape.
    """
    comma, colon = (" , ", " : ") if spaced else (",", ":")
    if isinstance(value, tuple):
        return "[" + comma.join(_text(item, spaced, escaped) for item in value) + "]"
    if isinstance(value, list):
        pairs = (_text(key, spaced, escaped) + colon + _text(item, spaced, escaped) for key, item in value)
        return "{" + comma.join(pairs) + "}"
    if isinstance(value, str) and escaped:
        return (
            '"'
            + "".join(
                json.dumps(char, ensure_ascii=True)[1:-1] if ord(char) > 0xFFFF else f"\\u{ord(char):04x}"
                for char in value
            )
            + '"'
        )
    return json.dumps(value)


def _walked(text, max_depth, max_containers, max_items):
    """What the standard library's parser and a walk of its result make of ``text``: the value, or None if refused."""
    containers = 0

    def unique(pairs):
        nonlocal containers
        containers += 1
        if len(dict(pairs)) != len(pairs):
            raise ValueError("repeated key")
        return dict(pairs)

    def walk(value):
        """Its depth, its arrays, and its items (an empty array or object counted as one)."""
        if isinstance(value, (list, dict)):
            inner = [walk(item) for item in (value if isinstance(value, list) else value.values())]
            depth = 1 + max((depth for depth, _, _ in inner), default=0)
            lists = isinstance(value, list) + sum(lists for _, lists, _ in inner)
            return depth, lists, max(1, len(value)) + sum(items for _, _, items in inner)
        return 0, 0, 0

    try:
        value = json.loads(text, object_pairs_hook=unique)
    except ValueError:
        return None
    depth, lists, items = walk(value)
    if depth > max_depth or containers + lists > max_containers or items > max_items:
        return None
    return (value,)


# One app for every example: the parser reads the limits from its config on each body.
_PARSER_APP = create_app({"TESTING": True})


@settings(max_examples=400, deadline=None)
@given(
    value=_JSON_VALUES,
    spaced=st.booleans(),
    escaped=st.booleans(),
    max_depth=st.integers(2, 5),
    max_items=st.integers(16, 28),
)
def test_the_byte_level_checks_agree_with_a_walk_of_the_parsed_value(value, spaced, escaped, max_depth, max_items):
    # Depth, the numbers of arrays, objects and items, and repeated keys are judged on the body's bytes (SPEC S13):
    # on any JSON text they refuse exactly what the standard library's parser and a walk of its result refuse.
    max_containers = 16
    limits = {"JSON_MAX_DEPTH": max_depth, "JSON_MAX_CONTAINERS": max_containers, "JSON_MAX_ITEMS": max_items}
    _PARSER_APP.config.update(limits)
    text = _text(value, spaced, escaped)
    expected = _walked(text, max_depth, max_containers, max_items)
    try:
        parsed = (_PARSER_APP.json.loads(text.encode()),)
    except ValueError:
        parsed = None
    assert parsed == expected, text


# Payloads near a small line limit, in every shape the line's floor must allow for: secret-named keys
# (a lookalike letter too) whose redaction shortens the line, a user_id of any shape that a pseudonym
# replaces, floats orjson writes longer than the line does, text the line escapes.
_LINE_KEYS = st.sampled_from(["password", "API-Key", "ſecret", "user_id", "x", "é", "a" * 30])
_LINE_TEXT = st.text(alphabet='ab é😀\x7f\n"\\', max_size=90)
_LINE_SCALARS = (
    st.none()
    | st.integers(-(2**70), 2**70)
    | st.floats(min_value=1e-05, max_value=1e-04)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _LINE_TEXT
)
_LINE_VALUES = st.recursive(
    _LINE_SCALARS,
    lambda children: st.lists(children, max_size=12) | st.dictionaries(_LINE_KEYS, children, max_size=5),
    max_leaves=24,
)
_USER_ID_KEY = "k" * 32


def _line_apps():
    limits = {"TESTING": True, "TELEMETRY_MAX_EVENT_BYTES": 256}
    return {
        (scrub, keyed): create_app(
            {**limits, "TELEMETRY_SCRUB_VALUES": scrub, "TELEMETRY_USER_ID_KEY": _USER_ID_KEY if keyed else None}
        )
        for scrub in (True, False)
        for keyed in (True, False)
    }


_APPS = {}


@settings(max_examples=250, deadline=None)
@given(payload=st.dictionaries(_LINE_KEYS, _LINE_VALUES, max_size=5), keyed=st.booleans())
# Shapes too large for the strategy: floats the line writes two characters shorter than orjson does,
# whose line fits; a user_id of 150 values that a pseudonym replaces, beside a secret-named key.
@example(payload={"x": [1e-05] * 19}, keyed=False)
@example(payload={"user_id": [1] * 150, "password": 1}, keyed=True)
@example(payload={"user_id": [1] * 150, "password": 1}, keyed=False)
def test_an_http_event_is_refused_unread_only_when_its_line_would_be_too_large(payload, keyed):
    # The line's floor refuses a payload before it is loaded or walked (SPEC S13): never one that
    # the line itself, before or after scrubbing, would let through.
    if not _APPS:
        _APPS.update(_line_apps())
    app, unscrubbed = _APPS[True, keyed], _APPS[False, keyed]
    with unscrubbed.app_context():
        logger = unscrubbed.extensions["event_logger"]
        _, before_scrubbing = logger._build(logger._state(), "error_event", payload)
    with app.app_context():
        logger = app.extensions["event_logger"]
        _, after_scrubbing = logger._build(logger._state(), "error_event", payload)
        too_large = max(len(before_scrubbing), len(after_scrubbing)) + 1 > 256
        try:
            logger._checked(logger._state(), "error_event", payload, None)
            refused = False
        except EventTooLarge:
            refused = True
    assert refused == too_large, (payload, len(before_scrubbing), len(after_scrubbing))
