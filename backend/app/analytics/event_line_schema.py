"""The event line's contract for consumers: a JSON Schema (draft 2020-12) per event type, from the marshmallow schemas.

The version in ``$id`` is MAJOR.MINOR. MINOR goes up when the schema admits
more than before and every line valid under the old version stays valid (a
new event type, a new known payload field, a new optional top-level member):
consumers keep working if they ignore what they do not know. MAJOR goes up
when a line valid under the old version could fail the new one, or a member
changes meaning (a field removed, renamed or narrowed, a new required
member). A test fails when the committed schema drifts from this module's
output, so a change to the payload schemas is seen, and versioned, in review.
"""

import functools
import json
from typing import Any

from apispec.ext.marshmallow.openapi import OpenAPIConverter
from marshmallow import Schema, fields, validate

from .schemas import PAYLOAD_SCHEMAS

EVENT_LINE_SCHEMA_VERSION = "1.0"
EVENT_LINE_SCHEMA_ID = f"urn:textbook-telemetry:event-line:{EVENT_LINE_SCHEMA_VERSION}"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
MEDIA_TYPE = "application/schema+json"


def _line_schema(event_type: str, payload_schema: Schema) -> Schema:
    """The marshmallow schema of one event type's line: the server's fields around the payload."""
    name = "".join(part.title() for part in event_type.split("_")) + "LineSchema"
    line = Schema.from_dict(
        {
            "event_id": fields.String(
                required=True,
                metadata={"format": "uuid", "description": "The event's id: the client's, else a random UUID."},
            ),
            "event_type": fields.String(required=True, validate=validate.OneOf([event_type])),
            "timestamp": fields.String(
                required=True, metadata={"format": "date-time", "description": "Server time, UTC, ending in Z."}
            ),
            "payload": fields.Nested(
                type(payload_schema),
                required=True,
                metadata={
                    "description": "The event's fields, after redaction, pseudonyms, scrubbing and the size cap."
                },
            ),
            "truncated": fields.Boolean(
                metadata={"enum": [True], "description": "Present when the size cap shortened the payload."}
            ),
        },
        name=name,
    )
    return line()


@functools.cache
def event_line_schema() -> dict[str, Any]:
    """The JSON Schema of an event line: one of the event types' line schemas, each in ``$defs``."""
    # OpenAPI 3.1's schema objects are JSON Schema 2020-12; a resolver that
    # names nothing inlines each payload schema in its line schema.
    # apispec's hints ask for an APISpec, which the converter reads only to register named schemas: none here.
    converter = OpenAPIConverter(
        openapi_version="3.1.0",
        schema_name_resolver=lambda schema: None,
        spec=None,  # type: ignore[arg-type]
    )
    definitions = {
        # schema2jsonschema carries no annotations in apispec 6.
        event_type: {
            "title": event_type,
            **converter.schema2jsonschema(_line_schema(event_type, payload_schema)),  # type: ignore[no-untyped-call]
        }
        for event_type, payload_schema in PAYLOAD_SCHEMAS.items()
    }
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": EVENT_LINE_SCHEMA_ID,
        "title": "Event line",
        "description": (
            "One line of the event stream: a compact JSON object, ASCII only, at most TELEMETRY_MAX_EVENT_BYTES "
            f"bytes with its newline. Version {EVENT_LINE_SCHEMA_VERSION} (MAJOR.MINOR): MINOR admits more and "
            "keeps every older line valid, MAJOR may not. Each event type's line alone is in $defs."
        ),
        "oneOf": [{"$ref": f"#/$defs/{event_type}"} for event_type in definitions],
        "$defs": definitions,
    }


def event_line_schema_text() -> str:
    """The schema as committed in the spec folder and served by the API: indented JSON and a newline."""
    return json.dumps(event_line_schema(), indent=2) + "\n"
