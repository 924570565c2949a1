"""The telemetry blueprint: event ingestion for the front end, and health."""

import functools
import hashlib
import hmac
import io
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, send_file
from marshmallow import ValidationError
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import TooManyRequests, Unauthorized

from .. import metrics
from ..context import this_app, this_request
from ..errors import BatchRefused, EventRefused, event_refusal
from ..openapi import bearer_auth, responds, use_body
from .bots import get_bot_filter
from .event_line_schema import MEDIA_TYPE as EVENT_LINE_SCHEMA_MEDIA_TYPE
from .event_line_schema import event_line_schema_text
from .event_logger import EventLogger, EventRejected, SinkUnavailable, get_event_logger
from .rate_limit import get_rate_limiter
from .schemas import (
    BATCH_DOCUMENT,
    EVENT_DOCUMENT,
    BatchAcceptedSchema,
    BatchProblemSchema,
    BatchSchema,
    EventAcceptedSchema,
    EventsIgnoredSchema,
    HealthSchema,
    ProbeSchema,
    TelemetryEventSchema,
)

bp = Blueprint("telemetry", __name__, url_prefix="/api/telemetry")

CLIENT_SCRIPT = Path(__file__).with_name("static") / "client.js"
# A page reuses the tracker this long before it revalidates it.
CLIENT_SCRIPT_MAX_AGE = 3600

_event_schema = TelemetryEventSchema()
_accepted_schema = EventAcceptedSchema()
_batch_schema = BatchAcceptedSchema()
_health_schema = HealthSchema()
_ignored_schema = EventsIgnoredSchema()
_probe_schema = ProbeSchema()

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


def require_ingest_token(view: Callable[..., Any]) -> Callable[..., Any]:
    """Refuse the request unless it carries the configured bearer token, if any."""

    @functools.wraps(view)
    def check_token(*args: Any, **kwargs: Any) -> Any:
        expected = this_app().config["TELEMETRY_INGEST_TOKEN"]
        if expected is not None:
            scheme, _, token = this_request().headers.get("Authorization", "").partition(" ")
            valid = scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected.encode())
            if not valid:
                raise Unauthorized("A valid bearer token is required.", www_authenticate=WWWAuthenticate("bearer"))
        return view(*args, **kwargs)

    return responds(401, description="Missing or wrong bearer token.", headers=_WWW_AUTHENTICATE)(
        bearer_auth(check_token)
    )


def _events_in(body: Mapping[str, Any]) -> int:
    """How many events a loaded body holds: a batch's list, else the one event of /log."""
    events = body.get("events")
    return 1 if events is None else len(events)


def ignore_bots(view: Callable[..., Any]) -> Callable[..., Any]:
    """Answer a crawler's or automated browser's events without writing them (TELEMETRY_IGNORE_BOTS)."""

    @functools.wraps(view)
    def judge_user_agent(body: Mapping[str, Any], *args: Any, **kwargs: Any) -> Any:
        bots = get_bot_filter()
        if bots is not None and bots.is_bot(this_request().environ.get("HTTP_USER_AGENT", "")):
            ignored = _events_in(body)
            metrics.EVENTS_IGNORED_BOT.inc(ignored)
            return _ignored_schema.dump({"status": "ignored", "reason": "bot", "ignored": ignored}), 200
        return view(body, *args, **kwargs)

    return responds(
        200,
        EventsIgnoredSchema,
        description="The User-Agent is a crawler or automated browser: nothing was written.",
    )(judge_user_agent)


def limit_rate(view: Callable[..., Any]) -> Callable[..., Any]:
    """Refuse the whole request when the client address's budget (TELEMETRY_RATE_LIMIT) cannot cover its events."""

    @functools.wraps(view)
    def charge_budget(body: Mapping[str, Any], *args: Any, **kwargs: Any) -> Any:
        cost = _events_in(body)
        retry_after = get_rate_limiter().retry_after(this_request().remote_addr or "", cost)
        if retry_after is not None:
            metrics.EVENTS_RATE_LIMITED.inc(cost)
            raise TooManyRequests(
                f"Too many events from this address; retry after {retry_after} s.", retry_after=retry_after
            )
        return view(body, *args, **kwargs)

    return responds(
        429,
        description="The client address has used its budget of events; nothing was written.",
        headers=_RETRY_AFTER,
    )(charge_budget)


@bp.post("/log")
@responds(202, EventAcceptedSchema, description="The event was accepted for the event stream.")
@responds(503, description="The event sink cannot take events now; retry later.", headers=_RETRY_AFTER)
@require_ingest_token
@use_body(_event_schema, documented=EVENT_DOCUMENT, plain_text=True)
@ignore_bots
@limit_rate
def log_event(body: Mapping[str, Any]) -> tuple[Any, int]:
    """Accept one analytics event from the front end."""
    try:
        event = get_event_logger().accept(body["event_type"], body["payload"], body.get("event_id"))
    except EventRejected as exc:
        # The client's event, not the app's own call: a 413 or 422 (errors.EventRefused).
        raise EventRefused(exc) from exc
    reply = {
        "status": "accepted",
        "event_id": event.event_id,
        "event_type": event.event_type,
        "timestamp": event.timestamp,
        "telemetry_enabled": this_app().config["TELEMETRY_ENABLED"],
    }
    return _accepted_schema.dump(reply), 202


@bp.post("/batch")
@responds(202, BatchAcceptedSchema, description="At least one event was accepted; see each one's result.")
@responds(413, BatchProblemSchema, description="No event was accepted: the body, or every refused event, is too large.")
@responds(422, BatchProblemSchema, description="The envelope is invalid, or no event was accepted.")
@responds(
    503,
    BatchProblemSchema,
    description="No event was accepted: the event sink cannot take events now.",
    headers=_RETRY_AFTER,
)
@require_ingest_token
# A body that is not an object is a bad envelope: 422, as for a missing events list.
@use_body(BatchSchema(), documented=BATCH_DOCUMENT, plain_text=True, objects_only=False)
@ignore_bots
@limit_rate
def log_batch(body: Mapping[str, Any]) -> tuple[Any, int]:
    """Accept several analytics events at once, each judged as /log would judge it alone."""
    results = _batch_results(get_event_logger(), body["events"])
    refused = [result["status"] for result in results if result["status"] != 202]
    for status in refused:
        metrics.count_rejected(status)
    accepted = len(results) - len(refused)
    reply = {"accepted": accepted, "rejected": len(refused), "results": results}
    if not accepted:
        raise BatchRefused(reply)
    reply.update(status="accepted", telemetry_enabled=this_app().config["TELEMETRY_ENABLED"])
    return _batch_schema.dump(reply), 202


def _batch_results(logger: EventLogger, events: Sequence[Any]) -> list[dict[str, Any]]:
    """The answer ``/log`` would give each event, as the entries of a batch's results, in order.

    The events valid alone are accepted together (``EventLogger.accept_all``),
    so that their lines share writes.
    """
    # Each slot is filled below, in one of the two loops.
    results: list[Any] = [None] * len(events)
    valid: list[int] = []
    loaded: list[tuple[str, Mapping[str, Any] | None, object | None]] = []
    for index, event in enumerate(events):
        try:
            body = _event_schema.load(event)
        except ValidationError as exc:
            results[index] = _batch_refusal(index, exc)
            continue
        valid.append(index)
        loaded.append((body["event_type"], body["payload"], body.get("event_id")))
    for index, outcome in zip(valid, logger.accept_all(loaded), strict=True):
        if isinstance(outcome, Exception):
            results[index] = _batch_refusal(index, outcome)
        else:
            results[index] = {"index": index, "status": 202, "event_id": outcome.event_id}
    return results


def _batch_refusal(index: int, exc: EventRejected | SinkUnavailable | ValidationError) -> dict[str, Any]:
    status, members = event_refusal(exc)
    return {"index": index, "status": status, **members}


# Sent with a 416: how long the script is, as bytes */length.
_CONTENT_RANGE = {"Content-Range": {"description": "bytes */length", "required": True, "schema": {"type": "string"}}}


@bp.get("/client.js")
@responds(
    200,
    {"type": "string"},
    media_type="text/javascript",
    description="The browser tracker: a page includes it with a script tag (see the README).",
)
@responds(304, description="The copy the client revalidated (If-None-Match, If-Modified-Since) is current.")
@responds(416, description="The Range asked for lies beyond the end of the script.", headers=_CONTENT_RANGE)
def get_client_script() -> Response:
    """Serve the browser tracker that defines window.TextbookTelemetry."""
    source, etag, modified = _client_script()
    # send_file adds the validators and answers a matching revalidation with 304.
    return send_file(
        io.BytesIO(source),
        mimetype="text/javascript",
        etag=etag,
        last_modified=modified,
        max_age=CLIENT_SCRIPT_MAX_AGE,
    )


@functools.cache
def _client_script() -> tuple[bytes, str, float]:
    """The tracker's bytes, their digest (the ETag) and modification time, read once per process."""
    source = CLIENT_SCRIPT.read_bytes()
    return source, hashlib.sha256(source).hexdigest()[:32], CLIENT_SCRIPT.stat().st_mtime


@bp.get("/health")
@responds(200, HealthSchema, description="The sink accepts events; counters of this worker process.")
@responds(503, HealthSchema, description="The sink cannot accept events now.")
def get_health() -> tuple[Any, int]:
    """Report this worker's event counters and whether its sink accepts events."""
    report = get_event_logger().health()
    return _health_schema.dump(report), 200 if report["status"] == "healthy" else 503


@bp.get("/live")
@responds(200, ProbeSchema, description="The process serves requests, whatever the event sink's state.")
def get_liveness() -> tuple[dict[str, str], int]:
    """Answer while the process serves: the liveness probe, which a stalled collector never fails."""
    return _probe_schema.dump({"status": "live"}), 200


@bp.get("/ready")
@responds(200, ProbeSchema, description="This worker's event sink accepts events.")
@responds(503, ProbeSchema, description="This worker's event sink cannot accept events now (see reason).")
def get_readiness() -> tuple[dict[str, str], int]:
    """Say whether this worker's event sink accepts events: the readiness probe."""
    report = get_event_logger().health()
    if report["status"] == "healthy":
        return _probe_schema.dump({"status": "ready"}), 200
    return _probe_schema.dump({"status": "not_ready", "reason": report["reason"]}), 503


@bp.get("/event-schema.json")
@responds(
    200,
    {"type": "object"},
    media_type=EVENT_LINE_SCHEMA_MEDIA_TYPE,
    description="The JSON Schema (draft 2020-12) of the event stream's lines, versioned in its $id.",
)
def get_event_line_schema() -> Response:
    """Serve the JSON Schema that every line of the event stream validates against."""
    return Response(event_line_schema_text(), content_type=EVENT_LINE_SCHEMA_MEDIA_TYPE)
