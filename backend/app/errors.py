"""One error shape for the whole API: RFC 9457 problem details."""

from collections.abc import Iterable, Mapping
from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException, InternalServerError, ServiceUnavailable
from werkzeug.http import HTTP_STATUS_CODES

from . import metrics
from .analytics.event_logger import EventRejected, EventTooLarge, SinkUnavailable, get_event_logger
from .analytics.scrubbing import scrubbed_cut

PROBLEM_MIMETYPE = "application/problem+json"

# Enough of an exception's message to diagnose it, short enough for one event.
_ERROR_MESSAGE_CHARS = 500


class EventRefused(Exception):
    """An event the client sent was rejected: the client's error (413, 422), raised by the ingestion routes.

    An EventRejected that reaches the error handlers unwrapped came from the
    app's own ``log()`` call: our mistake, answered as a server error.
    """

    def __init__(self, rejection: EventRejected) -> None:
        super().__init__(str(rejection))
        self.rejection = rejection


class BatchRefused(Exception):
    """No event of a batch was accepted; carries the per-event results for the problem."""

    def __init__(self, reply: dict[str, Any]) -> None:
        super().__init__("no event of the batch was accepted")
        self.reply = reply


def problem(
    status: int,
    detail: str | None,
    *,
    errors: Mapping[str, Any] | list[Any] | None = None,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    **members: Any,
) -> Response:
    """A problem+json response; ``type`` is about:blank, so ``title`` is the status phrase.

    ``members`` are extension members (RFC 9457 section 3.2) added after the standard ones.
    """
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTP_STATUS_CODES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    body.update(members)
    response = jsonify(body)
    response.status_code = status
    response.mimetype = PROBLEM_MIMETYPE
    response.headers.extend(headers or {})
    return response


def register_error_handlers(app: Flask) -> None:
    """Render every error, expected or not, as a problem."""
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(ValidationError, _validation_error)
    app.register_error_handler(EventRefused, _refused_event)
    app.register_error_handler(EventRejected, _rejected_in_app)
    app.register_error_handler(SinkUnavailable, _unavailable_sink)
    app.register_error_handler(BatchRefused, _refused_batch)
    app.register_error_handler(Exception, _unexpected_error)


def _http_error(error: HTTPException) -> Response | HTTPException:
    if error.code is None or error.code < 400:
        return error  # routing redirects are answers, not errors
    _count_refused_event(error.code)
    headers = [(name, value) for name, value in error.get_headers() if name.lower() != "content-type"]
    return problem(error.code, error.description, headers=headers)


def _validation_error(error: ValidationError) -> Response:
    _count_refused_event(422)
    return problem(422, "The request body failed validation.", errors=error.messages)


def event_refusal(error: EventRejected | SinkUnavailable | ValidationError) -> tuple[int, dict[str, Any]]:
    """What ``/log`` answers for an event it refuses, as (status, problem members).

    The batch route gives each event it refuses the same answer.
    """
    if isinstance(error, EventTooLarge):
        return 413, {"detail": f"The event is too large: {error}."}
    if isinstance(error, SinkUnavailable):
        return 503, {"detail": f"The event was not accepted: {error}."}
    # EventRejected, or the event's own ValidationError in a batch.
    return 422, {"detail": "The event failed validation.", "errors": error.messages}


def _refused_event(error: EventRefused) -> Response:
    status, members = event_refusal(error.rejection)
    _count_refused_event(status)
    return problem(status, **members)


def _count_refused_event(status: int) -> None:
    # A body refused before its events are read counts once (a batch's events count in its view).
    if request.endpoint in metrics.INGESTION_ENDPOINTS:
        metrics.count_rejected(status)


def _unavailable_sink(error: SinkUnavailable) -> Response | HTTPException:
    _, members = event_refusal(error)
    retry_after = current_app.config["TELEMETRY_RETRY_AFTER"]
    return _http_error(ServiceUnavailable(members["detail"], retry_after=retry_after))


def _refused_batch(error: BatchRefused) -> Response:
    """The most useful of the batch's failures: retry later, else too large, else invalid."""
    statuses = {result["status"] for result in error.reply["results"]}
    headers = None
    if 503 in statuses:
        status, detail = 503, "No event was accepted: the event sink cannot take events now."
        headers = {"Retry-After": str(current_app.config["TELEMETRY_RETRY_AFTER"])}
    elif statuses == {413}:
        status, detail = 413, "No event was accepted: every event is too large."
    else:
        status, detail = 422, "No event was accepted: see each event's result."
    return problem(status, detail, headers=headers, **error.reply)


def _rejected_in_app(error: EventRejected) -> Response | HTTPException:
    """The app's own code logged an event the EventLogger rejected, and did not catch it: a 500, never a 4xx."""
    current_app.logger.warning(
        "the app logged an event the EventLogger rejected on %s: %s: %s",
        request.path,
        type(error).__name__,
        error,
        exc_info=error,
    )
    return _server_error(error)


def _unexpected_error(error: Exception) -> Response | HTTPException:
    current_app.logger.error("unhandled %s on %s", type(error).__name__, request.path, exc_info=error)
    return _server_error(error)


def _server_error(error: Exception) -> Response | HTTPException:
    """The 500 problem, after an ``error_event`` naming ``error``."""
    get_event_logger().try_log(
        "error_event",
        {
            "error_type": type(error).__name__,
            "error_message": scrubbed_cut(
                str(error), _ERROR_MESSAGE_CHARS, current_app.config["TELEMETRY_SCRUB_VALUES"]
            ),
            "path": request.path,
        },
    )
    return _http_error(InternalServerError("The server could not complete the request."))
