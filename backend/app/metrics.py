"""Prometheus metrics for operators: totals of events accepted, refused and dropped, and request latency.

The metrics belong to the process, not to one app (SPEC S9). With
``PROMETHEUS_MULTIPROC_DIR`` set before prometheus_client is first imported,
it keeps each worker's values in that directory and ``/metrics`` sums them
over every worker of the server; see ``backend/gunicorn.conf.py`` for the
gunicorn side.

The series are made on first use, not at import (``__getattr__`` below): in
multiprocess mode making one opens this process's file in the directory, and
a process that counts nothing (a ``flask`` command, gunicorn's master under
``--preload``) leaves nothing there.
"""

import os
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Flask, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from werkzeug.exceptions import HTTPException

from .analytics.analytics_models import EVENT_TYPES
from .config import ConfigError
from .openapi import responds

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

# The statuses that refuse an event before it reaches the sink.
REJECTION_STATUSES = (400, 401, 403, 413, 415, 422)
# The routes whose refusals refuse events (an AI block's 4xx refuses a request, not an event).
INGESTION_ENDPOINTS = frozenset({"telemetry.log_event", "telemetry.log_batch"})

_accepted = Counter("telemetry_events_accepted", "Events written to the event stream.", ["event_type"])
_rejected = Counter(
    "telemetry_events_rejected", "Events refused for what they are, by the HTTP status that refused them.", ["reason"]
)
_ignored = Counter(
    "telemetry_events_ignored",
    "Events answered but not written, by why (a crawler or automated browser sent them).",
    ["reason"],
)
_request_duration = Histogram(
    "telemetry_request_duration_seconds",
    "Time to answer a request, by route.",
    ["route"],
    # Most answers take about a millisecond; the default buckets start at 5 ms.
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
# The route label of a request that no route serves (a 404): never its path, so the label set stays bounded.
UNMATCHED_ROUTE = "unmatched"
_responses = Counter(
    "telemetry_http_responses",
    "Responses by route (the URL rule, or unmatched for a path no route serves) and HTTP status code.",
    ["route", "code"],
)


def _make_series() -> dict[str, Any]:
    """The series that hold values: the unlabelled metrics, and each label's child, made once."""
    check_multiprocess_dir()
    return {
        "EVENTS_ACCEPTED": {event_type: _accepted.labels(event_type=event_type) for event_type in EVENT_TYPES},
        "EVENTS_REJECTED": {status: _rejected.labels(reason=str(status)) for status in REJECTION_STATUSES},
        # Not in EVENTS_REJECTED: a 429 refuses every event of its request, which the rate limit counts itself.
        "EVENTS_RATE_LIMITED": _rejected.labels(reason="429"),
        "EVENTS_IGNORED_BOT": _ignored.labels(reason="bot"),
        "RATE_LIMITER_ERRORS": Counter(
            "telemetry_rate_limiter_errors",
            "Ingestion requests admitted without a rate limit verdict: its storage failed, or failed a moment ago.",
        ),
        "EVENTS_REFUSED": Counter("telemetry_events_refused", "HTTP events the sink could not take (answered 503)."),
        "EVENTS_DROPPED": Counter(
            "telemetry_events_dropped",
            "In-app events dropped because the sink could not take them or they were invalid.",
        ),
        "SINK_WRITE_FAILURES": Counter(
            "telemetry_sink_write_failures", "Writes to the event stream that failed (full disk, broken pipe, ...)."
        ),
        # livesum: a worker that exited takes its backlog with it (gunicorn.conf.py marks it dead).
        "BACKLOG_EVENTS": Gauge(
            "telemetry_backlog_events",
            "Event lines waiting for a stream that would block.",
            multiprocess_mode="livesum",
        ),
    }


_SERIES = (
    "EVENTS_ACCEPTED",
    "EVENTS_REJECTED",
    "EVENTS_RATE_LIMITED",
    "EVENTS_IGNORED_BOT",
    "RATE_LIMITER_ERRORS",
    "EVENTS_REFUSED",
    "EVENTS_DROPPED",
    "SINK_WRITE_FAILURES",
    "BACKLOG_EVENTS",
)
_series_lock = threading.Lock()


def __getattr__(name: str) -> Any:
    """``metrics.EVENTS_ACCEPTED`` and the other series, made on first use; then plain module globals."""
    if name not in _SERIES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with _series_lock:
        if name not in globals():
            globals().update(_make_series())
    return globals()[name]


def _series(name: str) -> Any:
    # Inside this module a bare name does not reach __getattr__.
    return globals().get(name) or __getattr__(name)


def check_multiprocess_dir() -> None:
    """Refuse, in one line, a PROMETHEUS_MULTIPROC_DIR this process cannot keep its values in."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path is None:
        return
    if not path:
        raise ConfigError("PROMETHEUS_MULTIPROC_DIR is set but empty: name a directory, or unset it")
    if not os.path.isdir(path):
        problem = "is not a directory" if os.path.lexists(path) else "does not exist"
        raise ConfigError(
            f"PROMETHEUS_MULTIPROC_DIR {path!r} {problem}: create it (gunicorn --config "
            "backend/gunicorn.conf.py does) or unset the variable"
        )
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"PROMETHEUS_MULTIPROC_DIR {path!r} is not writable by this process")


bp = Blueprint("metrics", __name__)


def count_rejected(status: int) -> None:
    """Count one event refused with ``status``, if that status refuses events (not 202, not 503)."""
    rejected = _series("EVENTS_REJECTED").get(status)
    if rejected is not None:
        rejected.inc()


@bp.get("/metrics")
@responds(
    200,
    {"type": "string"},
    media_type=CONTENT_TYPE_LATEST.split(";")[0],
    description="The metrics in Prometheus' text exposition format.",
)
def get_metrics() -> Response:
    """Serve the process's metrics, or the whole server's in multiprocess mode, in Prometheus' text format."""
    _series("EVENTS_ACCEPTED")  # every series is listed, at zero until counted
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        # A fresh registry per scrape, as prometheus_client documents for multiprocess mode.
        registry = CollectorRegistry()
        # prometheus_client leaves the collector's constructor unannotated.
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    """Time every request to a route, and serve ``/metrics``; refuse a PROMETHEUS_MULTIPROC_DIR it cannot use."""
    check_multiprocess_dir()
    # Flask's documented way to add WSGI middleware; its stubs declare wsgi_app a method.
    app.wsgi_app = _RequestTimer(app)  # type: ignore[method-assign]
    app.register_blueprint(bp)


class _RequestTimer:
    """WSGI middleware timing and counting each request, labelled by its route (the URL rule) and status code.

    Around ``wsgi_app`` rather than in before/after-request hooks: the same
    measure at a fraction of their cost. Most routes have a fixed path (no
    URL variables), so the path names the route with one dictionary look-up;
    any other path is matched against the URL map, and one that no route
    serves (a 404) is counted under ``unmatched``, never under its own path,
    which keeps the label set to the app's routes.
    """

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.wsgi_app = app.wsgi_app
        self._fixed: dict[str, _RouteSeries] | None = None
        self._matched: dict[str, _RouteSeries] = {}

    def __call__(self, environ: "WSGIEnvironment", start_response: "StartResponse") -> Iterable[bytes]:
        started = time.perf_counter()
        statuses: list[str] = []

        def respond(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            statuses.append(status)
            return start_response(status, headers, exc_info)

        try:
            return self.wsgi_app(environ, respond)
        finally:
            series = self._fixed_routes().get(environ.get("PATH_INFO", "")) or self._route_of(environ)
            series.duration.observe(time.perf_counter() - started)
            if statuses:
                series.count(statuses[-1])

    def _fixed_routes(self) -> dict[str, "_RouteSeries"]:
        # Made on the first request, once the URL map is complete; one child per route, made once.
        if self._fixed is None:
            routes = {rule.rule for rule in self.app.url_map.iter_rules() if not rule.arguments}
            self._fixed = {route: _RouteSeries(route) for route in routes}
        return self._fixed

    def _route_of(self, environ: "WSGIEnvironment") -> "_RouteSeries":
        """The series of the rule that serves a path with URL variables, or ``unmatched``'s."""
        try:
            rule, _ = self.app.url_map.bind_to_environ(environ).match(return_rule=True)
            route = rule.rule
        except HTTPException:
            route = UNMATCHED_ROUTE
        series = self._matched.get(route)
        if series is None:
            series = self._matched.setdefault(route, _RouteSeries(route))
        return series


class _RouteSeries:
    """One route's duration histogram, and its response counter per status line, made on first use."""

    __slots__ = ("route", "duration", "_responses")

    def __init__(self, route: str) -> None:
        self.route = route
        self.duration = _request_duration.labels(route=route)
        self._responses: dict[str, Any] = {}

    def count(self, status: str) -> None:
        """Count one response with ``status`` (a WSGI status line, such as ``202 ACCEPTED``)."""
        responses = self._responses.get(status)
        if responses is None:
            # Keyed by the whole line, labelled by its code: the set of lines is the app's statuses.
            responses = self._responses.setdefault(status, _responses.labels(route=self.route, code=status[:3]))
        responses.inc()
