"""CompiledSchema: its fast path decides, returns and fails exactly like marshmallow."""

import collections
import itertools
import types

import pytest
from app import create_app
from app.analytics.compiled_schema import CompiledSchema
from app.analytics.schemas import PAYLOAD_SCHEMAS, BatchSchema, EventAcceptedSchema, TelemetryEventSchema
from marshmallow import INCLUDE, Schema, ValidationError, fields, post_load, validate


class Text(str):
    """A str subclass: marshmallow loads it as a new plain str."""


SAMPLE_VALUES = [
    "",
    "ch-3",
    "quiz",
    "ask-question",
    "poem",
    "2026-01-02T03:04:05Z",
    "2026-01-02T03:04:05.123456+02:00",
    "2026-13-02T03:04:05Z",
    "yesterday",
    "line\nbreak \u2028 \x00",
    Text("ch-3"),
    b"bytes",
    None,
    0,
    7,
    1.5,
    True,
    [],
    ["a"],
    {},
    {"text": "x"},
]

PAYLOAD_FIELDS = sorted({name for schema in PAYLOAD_SCHEMAS.values() for name in schema.fields})

EXTRA_KEYS = [
    {},
    {"scroll_depth": 0.75},
    {"tags": ["a", {"b": 1}], "Password": "hunter2", "zeta": None, "alpha": "a"},
    {1: "int key"},
    {None: "none key"},
    {("tuple",): "tuple key"},
]


def payload_inputs():
    """Every known field with every sample value, combined with extra keys; and non-dicts."""
    for name, value in itertools.product(PAYLOAD_FIELDS, SAMPLE_VALUES):
        yield {name: value}
    for extra in EXTRA_KEYS:
        yield {"user_id": "u1", "chapter_id": "ch-1", "block_type": "quiz", "query": None, **extra}
        yield {**extra, "timestamp": "2026-01-02T03:04:05Z", "section_id": "s"}
        yield {"error_type": "TypeError", "error_message": 5, **extra}
    yield collections.OrderedDict(user_id="u1")
    yield types.MappingProxyType({"user_id": "u1"})
    yield from ([], "text", 7, None)


def body_inputs():
    """Telemetry request bodies: good, with each payload shape, and every kind of bad."""
    payloads = [None, {}, {"chapter_id": "c"}, {1: "x"}, {"a": {"b": [1]}}, [], "x", 5]
    payloads.append(collections.OrderedDict(a=1))
    event_types = ["chapter_visit", "error_event", "ai_block_used", "page_view", "", 5, None]
    event_types.append(Text("error_event"))
    for event_type in event_types:
        yield {"event_type": event_type}
        for payload in payloads:
            yield {"event_type": event_type, "payload": payload}
            yield {"payload": payload, "event_type": event_type, "extra": 1}
    yield {}
    yield {"payload": {}}
    yield from ([], "text", None)


def outcome(load, data):
    try:
        result = load(data)
    except ValidationError as error:
        return "rejected", error.messages
    return "accepted", list(result.items())


def marshmallow_load(schema):
    return lambda data: Schema.load(schema, data)


@pytest.mark.parametrize("event_type", sorted(PAYLOAD_SCHEMAS))
@pytest.mark.parametrize("data", list(payload_inputs()), ids=repr)
def test_payload_load_matches_marshmallow(event_type, data):
    schema = PAYLOAD_SCHEMAS[event_type]

    assert outcome(schema.load, data) == outcome(marshmallow_load(schema), data)


@pytest.mark.parametrize("data", list(body_inputs()), ids=repr)
def test_telemetry_body_load_matches_marshmallow(data):
    schema = TelemetryEventSchema()

    assert outcome(schema.load, data) == outcome(marshmallow_load(schema), data)


BATCH_EVENT = {"event_type": "chapter_visit"}
BATCH_BODIES = [
    {"events": [BATCH_EVENT]},
    {"events": [BATCH_EVENT] * 3},  # over the limit below
    {"events": []},
    {"events": [BATCH_EVENT, None]},
    {"events": [BATCH_EVENT, 5, "x", [], {}]},
    {"events": (BATCH_EVENT,)},
    {"events": {"0": BATCH_EVENT}},
    {"events": None},
    {"events": "x"},
    {},
    {"events": [BATCH_EVENT], "extra": 1},
    {"events": [None, BATCH_EVENT]},
    {"events": [None]},
    [],
    None,
]


@pytest.mark.parametrize("data", BATCH_BODIES, ids=repr)
def test_batch_envelope_load_matches_marshmallow(data):
    schema = BatchSchema()

    with create_app({"TESTING": True, "TELEMETRY_MAX_BATCH_EVENTS": 2}).app_context():
        assert outcome(schema.load, data) == outcome(marshmallow_load(schema), data)


REPLY = {
    "status": "accepted",
    "event_id": "e",
    "event_type": "chapter_visit",
    "timestamp": "t",
    "telemetry_enabled": True,
}


@pytest.mark.parametrize(
    "reply",
    [
        REPLY,
        {**dict(reversed(REPLY.items())), "telemetry_enabled": False, "more": 1},
        {key: value for key, value in REPLY.items() if key != "telemetry_enabled"},
        {**REPLY, "status": None, "telemetry_enabled": 1},
        {**REPLY, "status": Text("accepted"), "event_id": 5},
        types.SimpleNamespace(**REPLY),
    ],
    ids=repr,
)
def test_accepted_reply_dump_matches_marshmallow(reply):
    schema = EventAcceptedSchema()

    assert list(schema.dump(reply).items()) == list(Schema.dump(schema, reply).items())


def test_plain_valid_data_never_reaches_marshmallow(monkeypatch):
    schema = PAYLOAD_SCHEMAS["ai_block_used"]

    def refuse(*args, **kwargs):
        raise AssertionError("marshmallow's own load/dump was called")

    monkeypatch.setattr(Schema, "load", refuse)
    monkeypatch.setattr(Schema, "dump", refuse)
    payload = {"user_id": "u", "block_type": "quiz", "query": None, "extra": [1]}
    assert schema.load(payload) == payload
    body = TelemetryEventSchema().load({"event_type": "error_event"})
    assert body == {"event_type": "error_event", "payload": None}
    assert EventAcceptedSchema().dump(REPLY) == REPLY
    with create_app({"TESTING": True}).app_context():
        assert BatchSchema().load({"events": [BATCH_EVENT, {}]}) == {"events": [BATCH_EVENT, {}]}


def test_loaded_data_is_a_new_dict():
    payload = {"user_id": "u", "extra": "kept"}
    body = {"event_type": "chapter_visit", "payload": payload}

    assert PAYLOAD_SCHEMAS["chapter_visit"].load(payload) is not payload
    assert TelemetryEventSchema().load(body)["payload"] is not payload


class HookedSchema(CompiledSchema):
    class Meta:
        unknown = INCLUDE

    name = fields.String()

    @post_load
    def mark(self, data, **kwargs):
        return {**data, "hooked": True}


class OtherFieldsSchema(CompiledSchema):
    count = fields.Integer(strict=True, validate=validate.Range(1, 10))
    name = fields.String(load_default=lambda: "made")


@pytest.mark.parametrize(
    ("schema", "data", "expected"),
    [
        (HookedSchema(), {"name": "n"}, {"name": "n", "hooked": True}),
        (OtherFieldsSchema(), {"count": 3}, {"count": 3, "name": "made"}),
    ],
)
def test_schemas_the_plan_cannot_mirror_use_marshmallow(schema, data, expected):
    assert schema.load(data) == expected
    with pytest.raises(ValidationError):
        schema.load({"name": 5})


def test_explicit_load_options_use_marshmallow():
    schema = TelemetryEventSchema()

    loaded = schema.load([{"event_type": "error_event"}], many=True)

    assert loaded == [{"event_type": "error_event", "payload": None}]
    assert schema.load({"payload": {}}, partial=True) == {"payload": {}}
