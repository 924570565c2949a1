"""The telemetry blueprint: event ingestion for the front end, and health."""

import functools
import hmac

from flask import Blueprint, current_app, request
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Unauthorized

from ..openapi import bearer_auth, responds, use_body
from .event_logger import get_event_logger
from .schemas import EVENT_VARIANT_SCHEMAS, EventAcceptedSchema, HealthSchema, TelemetryEventSchema

bp = Blueprint("telemetry", __name__, url_prefix="/api/telemetry")

_accepted_schema = EventAcceptedSchema()
_health_schema = HealthSchema()

# Both are sent with every answer of their status, hence required.
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "required": True,
        "schema": {"type": "integer"},
    }
}
_WWW_AUTHENTICATE = {
    "WWW-Authenticate": {"description": "The Bearer scheme.", "required": True, "schema": {"type": "string"}}
}


def require_ingest_token(view):
    """Refuse the request unless it carries the configured bearer token, if any."""

    @functools.wraps(view)
    def check_token(*args, **kwargs):
        expected = current_app.config["TELEMETRY_INGEST_TOKEN"]
        if expected is not None:
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            valid = scheme.lower() == "bearer" and hmac.compare_digest(
                token.strip().encode(), expected.encode()
            )
            if not valid:
                raise Unauthorized(
                    "A valid bearer token is required.", www_authenticate=WWWAuthenticate("bearer")
                )
        return view(*args, **kwargs)

    return responds(401, description="Missing or wrong bearer token.", headers=_WWW_AUTHENTICATE)(
        bearer_auth(check_token)
    )


@bp.post("/log")
@responds(202, EventAcceptedSchema, description="The event was accepted for the event stream.")
@responds(503, description="The event sink cannot take events now; retry later.", headers=_RETRY_AFTER)
@require_ingest_token
@use_body(TelemetryEventSchema(), one_of=EVENT_VARIANT_SCHEMAS)
def log_event(body):
    """Accept one analytics event from the front end."""
    event = get_event_logger().accept(body["event_type"], body["payload"])
    reply = {
        "status": "accepted",
        "event_id": event.event_id,
        "event_type": event.event_type,
        "timestamp": event.timestamp,
        "telemetry_enabled": current_app.config["TELEMETRY_ENABLED"],
    }
    return _accepted_schema.dump(reply), 202


@bp.get("/health")
@responds(200, HealthSchema, description="The sink accepts events; counters of this worker process.")
@responds(503, HealthSchema, description="The sink cannot accept events now.")
def get_health():
    """Report this worker's event counters and whether its sink accepts events."""
    report = get_event_logger().health()
    return _health_schema.dump(report), 200 if report["status"] == "healthy" else 503
