"""Marshmallow schemas for telemetry requests, payloads and replies."""

import re
from collections.abc import Sized
from datetime import datetime
from typing import Any

from marshmallow import INCLUDE, RAISE, Schema, ValidationError, fields, validate

from ..context import this_app
from ..openapi import ProblemSchema
from .analytics_models import EVENT_TYPES
from .compiled_schema import CompiledSchema

BLOCK_TYPES = ("ask-question", "explain-like-10", "quiz", "diagram")

# RFC 3339 date-time, the profile of ISO 8601 that JSON Schema's "date-time" names.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?\Z", re.ASCII)


def _iso_datetime(value: str) -> None:
    if _RFC3339.match(value):
        try:
            datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
            return
        except ValueError:
            pass
    raise ValidationError("Not a valid ISO 8601 date-time.")


class PayloadSchema(CompiledSchema):
    """Known payload fields are type-checked; unknown ones are kept as sent."""

    class Meta:
        unknown = INCLUDE


class AiBlockUsedPayloadSchema(PayloadSchema):
    user_id = fields.String()
    chapter_id = fields.String()
    section_id = fields.String()
    block_type = fields.String(validate=validate.OneOf(BLOCK_TYPES))
    query = fields.String(allow_none=True)


class ChapterVisitPayloadSchema(PayloadSchema):
    user_id = fields.String()
    chapter_id = fields.String()
    timestamp = fields.String(validate=_iso_datetime, metadata={"format": "date-time"})


class ErrorEventPayloadSchema(PayloadSchema):
    error_type = fields.String()
    error_message = fields.String()
    chapter_id = fields.String()
    section_id = fields.String()


PAYLOAD_SCHEMAS = {
    "ai_block_used": AiBlockUsedPayloadSchema(),
    "chapter_visit": ChapterVisitPayloadSchema(),
    "error_event": ErrorEventPayloadSchema(),
}


def _client_event_id() -> fields.UUID:
    return fields.UUID(
        metadata={
            "description": "The client's id for the event (a UUID), kept on its line so a retry can be deduplicated."
        }
    )


def _event_variant(event_type: str, payload_schema: type[PayloadSchema]) -> type[Schema]:
    name = "".join(part.title() for part in event_type.split("_")) + "EventSchema"
    return Schema.from_dict(
        {
            "event_type": fields.String(required=True, validate=validate.OneOf([event_type])),
            "payload": fields.Nested(payload_schema, allow_none=True),
            "event_id": _client_event_id(),
        },
        name=name,
    )


# The telemetry body, one variant per event type, for the OpenAPI document;
# the route enforces the same rules with TelemetryEventSchema and PAYLOAD_SCHEMAS.
EVENT_DOCUMENT = {"oneOf": [_event_variant(event_type, type(schema)) for event_type, schema in PAYLOAD_SCHEMAS.items()]}


class TelemetryEventSchema(CompiledSchema):
    """Body of ``POST /api/telemetry/log``, and each event of a batch."""

    class Meta:
        unknown = RAISE

    event_type = fields.String(required=True, validate=validate.OneOf(EVENT_TYPES))
    payload = fields.Dict(
        keys=fields.String(),
        allow_none=True,
        load_default=None,
        metadata={"description": "Event fields; known ones are type-checked per event_type."},
    )
    event_id = _client_event_id()


def _batch_size(events: Sized) -> None:
    most = this_app().config["TELEMETRY_MAX_BATCH_EVENTS"]
    if not 1 <= len(events) <= most:
        raise ValidationError(f"A batch holds 1 to {most} events, not {len(events)}.")


class BatchSchema(CompiledSchema):
    """Body of ``POST /api/telemetry/batch``: the envelope; each event is judged on its own."""

    class Meta:
        unknown = RAISE

    # A validator rather than a @validates hook: a schema with hooks takes no compiled plan.
    # Any element, null included, is the route's to judge on its own, as /log would judge it.
    events = fields.List(fields.Raw(allow_none=True), required=True, validate=_batch_size)


# The batch body as documented: each event is shaped like the body of /log,
# though the route judges each one on its own rather than the whole body.
BATCH_DOCUMENT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["events"],
    "properties": {
        "events": {
            "type": "array",
            "minItems": 1,
            "items": EVENT_DOCUMENT,
            "description": (
                "1 to TELEMETRY_MAX_BATCH_EVENTS (default 100) events, each judged as /log would. An element"
                " that is not a valid event (null, a string, a number, an object that fails) is refused alone:"
                " its result is a 422, and the other elements are still judged."
            ),
        }
    },
}


class BatchResultSchema(Schema):
    """What ``/log`` would have answered for one event of a batch."""

    index = fields.Integer(required=True)
    status = fields.Integer(required=True, metadata={"enum": [202, 413, 422, 503]})
    event_id = fields.String(metadata={"format": "uuid"})
    detail = fields.String(metadata={"description": "Why the event was refused, as /log's problem would say."})
    errors = fields.Dict(metadata={"description": "Per-field messages, for a 422."})


class BatchResults(fields.List[Any]):
    """A batch's results, documented as a list of ``BatchResultSchema`` and dumped as the view built them.

    The view builds each entry in its dumped form (ints, strings, the
    messages dict); dumping a hundred of them field by field again costs a
    sixth of a batch. Tests hold every kind of entry to the schema's dump.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(fields.Nested(BatchResultSchema), **kwargs)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> list[Any] | None:
        return None if value is None else list(value)


class BatchProblemSchema(ProblemSchema):
    """A refused batch: a bad envelope (with ``errors``) or no event accepted (with ``results``)."""

    errors = fields.Dict()
    accepted = fields.Integer()
    rejected = fields.Integer()
    results = BatchResults()


class BatchAcceptedSchema(Schema):
    """Reply to a batch of which at least one event was accepted."""

    status = fields.String(required=True, metadata={"enum": ["accepted"]})
    accepted = fields.Integer(required=True)
    rejected = fields.Integer(required=True)
    results = BatchResults(required=True)
    telemetry_enabled = fields.Boolean(required=True)


class EventAcceptedSchema(CompiledSchema):
    """Reply to an accepted event."""

    status = fields.String(required=True, metadata={"enum": ["accepted"]})
    event_id = fields.String(required=True, metadata={"format": "uuid"})
    event_type = fields.String(required=True, validate=validate.OneOf(EVENT_TYPES))
    timestamp = fields.String(required=True, metadata={"format": "date-time"})
    telemetry_enabled = fields.Boolean(required=True)


class EventsIgnoredSchema(CompiledSchema):
    """Reply to a request from a crawler or automated browser: nothing was written."""

    status = fields.String(required=True, metadata={"enum": ["ignored"]})
    reason = fields.String(required=True, metadata={"enum": ["bot"]})
    ignored = fields.Integer(required=True, metadata={"description": "Events in the request, none written."})


class BacklogStateSchema(Schema):
    """Lines waiting for a stream that would block, and how many may wait."""

    depth = fields.Integer(required=True)
    capacity = fields.Integer(required=True)


class HealthSchema(Schema):
    """Counters of this app in this worker process since it started."""

    status = fields.String(required=True, validate=validate.OneOf(["healthy", "unhealthy"]))
    scope = fields.String(required=True, metadata={"enum": ["process"]})
    telemetry_enabled = fields.Boolean(required=True)
    events_logged = fields.Integer(required=True)
    events_by_type = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    events_dropped = fields.Integer(required=True)
    events_refused = fields.Integer(required=True)
    events_failed = fields.Integer(required=True, metadata={"description": "Writes to the event stream that failed."})
    handler_failures = fields.Integer(
        required=True, metadata={"description": "Records that a handler on app.analytics.events raised on."}
    )
    event_types = fields.List(fields.String(), required=True)
    backlog = fields.Nested(BacklogStateSchema, required=True)
    rate_limiter = fields.String(
        required=True,
        metadata={
            "enum": ["ok", "off", "unavailable"],
            "description": "unavailable: its storage failed, requests are admitted unchecked (still 200).",
        },
    )
    reason = fields.String()


class ProbeSchema(Schema):
    """A liveness or readiness answer, for an orchestrator's probes."""

    status = fields.String(required=True, metadata={"enum": ["live", "ready", "not_ready"]})
    reason = fields.String(metadata={"description": "Why the event sink cannot accept events (not_ready only)."})
