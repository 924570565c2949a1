"""The EventLogger extension: validates, stamps and emits analytics events."""

import json
import threading
import time
import weakref
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Literal, NotRequired, TypedDict

from flask import Flask, current_app
from marshmallow import ValidationError

from .. import metrics
from ..config import DEFAULTS, validate_telemetry_config
from ..context import this_app
from ..per_process import reset_after_fork
from .analytics_models import EVENT_TYPES, AnalyticsEvent
from .payload_rules import CONTAINERS, fit_line, line_floor, pseudonymise, redact, redact_may_change
from .schemas import PAYLOAD_SCHEMAS
from .scrubbing import may_hold_secrets, payload_classes, scrub
from .sink import EventSink, events_logger, open_stream, publish


class EventRejected(ValueError):
    """Root of the errors for an event the EventLogger will not accept."""

    messages: dict[str, Any]

    def __init__(self, message: str, messages: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.messages = messages if messages is not None else {"_schema": [message]}


class UnknownEventType(EventRejected):
    """The event_type is not one of ``EVENT_TYPES``."""


class InvalidPayload(EventRejected):
    """The payload is not an object, or a known field has the wrong type."""


class EventTooLarge(EventRejected):
    """The event's line would exceed ``TELEMETRY_MAX_EVENT_BYTES``."""


class SinkUnavailable(RuntimeError):
    """The sink cannot take the event now: its stream failed or stalled, or its backlog is full."""


class BacklogState(TypedDict):
    """Lines waiting for a stream that would block, and how many may wait."""

    depth: int
    capacity: int


class HealthReport(TypedDict):
    """``EventLogger.health()``: counters and sink state of one app in one process."""

    status: Literal["healthy", "unhealthy"]
    scope: Literal["process"]
    telemetry_enabled: bool
    events_logged: int
    events_by_type: dict[str, int]
    events_dropped: int
    events_refused: int
    events_failed: int
    handler_failures: int
    event_types: list[str]
    backlog: BacklogState
    rate_limiter: str
    reason: NotRequired[str]


# What accept_all() gives for each event: the event written, or why it was refused.
Outcome = AnalyticsEvent | EventRejected | SinkUnavailable


class _AppTelemetry:
    """Everything the EventLogger keeps for one app in one process."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.enabled = config["TELEMETRY_ENABLED"]
        self.max_bytes = config["TELEMETRY_MAX_EVENT_BYTES"]
        self.max_depth = config.get("JSON_MAX_DEPTH", DEFAULTS["JSON_MAX_DEPTH"])
        self.warn_interval = config["TELEMETRY_WARN_INTERVAL"]
        self.scrub_values = config["TELEMETRY_SCRUB_VALUES"]
        key = config["TELEMETRY_USER_ID_KEY"]
        self.user_id_key = None if key is None else key.reveal().encode("utf-8")
        self.sink = EventSink(
            open_stream(config["TELEMETRY_EVENTS_LOG"]),
            capacity=config["TELEMETRY_QUEUE_SIZE"],
            stall_seconds=config["TELEMETRY_STALL_SECONDS"],
            max_line=self.max_bytes,
        )
        # The lists that record_events() fills, each while its block is open.
        self.recorders: list[list[dict[str, Any]]] = []
        self.reset_counters()
        # Counts are per worker process: a forked worker starts from zero.
        reset_after_fork(self, _AppTelemetry.reset_counters)

    def reset_counters(self) -> None:
        # A fresh lock too: one held by another thread at fork stays held in the child.
        self.lock = threading.Lock()
        self.logged: Counter[str] = Counter()
        self.dropped = 0
        self.refused = 0
        self.handler_failures = 0
        self.unwarned_drops = 0
        self.last_warning: float | None = None


class EventLogger:
    """Flask extension that turns validated events into lines on the event stream."""

    def __init__(self, app: Flask | None = None) -> None:
        self._apps: weakref.WeakKeyDictionary[Flask, _AppTelemetry] = weakref.WeakKeyDictionary()
        # One logger for the whole process: a handler attached there sees every app's events once.
        self._records = events_logger()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register on ``app``: config defaults, per-app state and the CLI."""
        if "event_logger" in app.extensions:
            raise RuntimeError(
                "An EventLogger is already registered on this app; "
                "use app.extensions['event_logger'] instead of registering again."
            )
        from .cli import telemetry_cli

        validate_telemetry_config(app.config)
        self._apps[app] = _AppTelemetry(app.config)
        app.extensions["event_logger"] = self
        app.cli.add_command(telemetry_cli)

    def log(self, event_type: str, payload: Mapping[str, Any] | None = None) -> None:
        """Emit one event; raises EventRejected (a ValueError) for bad input.

        A full or stalled sink does not fail the caller: the event is dropped,
        counted and warned about on the app logger.
        """
        state = self._state()
        event, line = self._build(state, event_type, payload)
        if not state.enabled:
            return
        event, line = fit_line(event, line, state.max_bytes)
        problem = self._emit(state, event, line)
        if problem is not None:
            self._drop(state, event_type, problem)

    def try_log(self, event_type: str, payload: Mapping[str, Any] | None = None) -> bool:
        """``log`` for callers serving a user: any failure is counted and warned, never raised."""
        try:
            self.log(event_type, payload)
            return True
        except Exception as exc:
            self._drop(self._state(), event_type, f"{type(exc).__name__}: {exc}")
            return False

    def accept(
        self, event_type: str, payload: Mapping[str, Any] | None = None, event_id: object | None = None
    ) -> AnalyticsEvent:
        """Emit one event or raise; returns the AnalyticsEvent that was emitted.

        Used by the HTTP routes, which refuse rather than truncate an event
        that is too large (EventTooLarge) and report a sink that cannot take
        it (SinkUnavailable). ``event_id``, a UUID the client chose, becomes
        the event's id so that a retried event can be deduplicated downstream.
        """
        state = self._state()
        event, line = self._checked(state, event_type, payload, event_id)
        if not state.enabled:
            return event
        problem = self._emit(state, event, line)
        if problem is not None:
            self._refused(state, 1)
            raise SinkUnavailable(problem)
        return event

    def accept_all(self, events: Iterable[tuple[str, Mapping[str, Any] | None, object | None]]) -> list[Outcome]:
        """``accept`` for each ``(event_type, payload, event_id)`` of ``events``; what each one gave, in order.

        Each outcome is the AnalyticsEvent emitted, or the EventRejected or
        SinkUnavailable that refused it. The accepted events' lines are
        written together (``EventSink.write_lines``), several to a write(2),
        in the order of ``events``; once the sink stops taking them, the rest
        are refused as ``accept`` would refuse them.
        """
        state = self._state()
        outcomes: list[Outcome] = []
        built: list[tuple[int, AnalyticsEvent, str]] = []
        for event_type, payload, event_id in events:
            try:
                event, line = self._checked(state, event_type, payload, event_id)
            except EventRejected as exc:
                outcomes.append(exc)
                continue
            built.append((len(outcomes), event, line))
            outcomes.append(event)
        if not state.enabled or not built:
            return outcomes
        lines = [line for _, _, line in built]
        taken = state.sink.write_lines([(line + "\n").encode("ascii") for line in lines])
        self._written(state, Counter(event.event_type for _, event, _ in built[:taken]), lines[:taken])
        if taken < len(built):
            problem = state.sink.problem() or "the event sink is unavailable"
            for position, _, _ in built[taken:]:
                outcomes[position] = SinkUnavailable(problem)
            self._refused(state, len(built) - taken)
        return outcomes

    def _checked(
        self, state: _AppTelemetry, event_type: str, payload: Mapping[str, Any] | None, event_id: object | None
    ) -> tuple[AnalyticsEvent, str]:
        """``_build``, refusing (EventTooLarge) an event whose line is over the size limit rather than shortening it."""
        event, line = self._build(state, event_type, payload, event_id, refuse_over=state.max_bytes)
        if len(line) >= state.max_bytes:
            raise _too_large(line, state.max_bytes)
        return event, line

    def _emit(self, state: _AppTelemetry, event: AnalyticsEvent, line: str) -> str | None:
        """Write the event's line, then hand its record to the events logger; why not, or None."""
        if not state.sink.write((line + "\n").encode("ascii")):
            return state.sink.problem() or "the event sink is unavailable"
        failures = publish(self._records, line)
        metrics.EVENTS_ACCEPTED[event.event_type].inc()
        with state.lock:
            state.logged[event.event_type] += 1
            state.handler_failures += failures
            if state.recorders:
                _record(state.recorders, (line,))
        return None

    def _written(self, state: _AppTelemetry, by_type: Counter[str], lines: Sequence[str]) -> None:
        """``_emit``'s counts and records for ``lines``, already written: ``by_type`` counts their events."""
        failures = publish(self._records, *lines)
        for event_type, count in by_type.items():
            metrics.EVENTS_ACCEPTED[event_type].inc(count)
        with state.lock:
            state.logged.update(by_type)
            state.handler_failures += failures
            if state.recorders:
                _record(state.recorders, lines)

    @staticmethod
    def _refused(state: _AppTelemetry, count: int) -> None:
        with state.lock:
            state.refused += count
        metrics.EVENTS_REFUSED.inc(count)

    def _build(
        self,
        state: _AppTelemetry,
        event_type: str,
        payload: Mapping[str, Any] | None,
        event_id: object | None = None,
        refuse_over: int | None = None,
    ) -> tuple[AnalyticsEvent, str]:
        """The validated, redacted, pseudonymised, scrubbed and stamped event, and its line.

        The steps, in order, are those of ``payload_rules``; the size cap
        (``fit_line``, or the HTTP routes' 413) comes after, on the line. With
        ``refuse_over`` (the HTTP routes), a payload whose ``line_floor`` is
        already that long is refused (EventTooLarge) before it is walked or
        encoded, and a line that long before scrubbing without being
        scrubbed: a client must not make the server work on what it refuses
        in the end (SPEC S13).
        """
        schema = PAYLOAD_SCHEMAS.get(event_type) if isinstance(event_type, str) else None
        if schema is None:
            raise UnknownEventType(
                f"unknown event_type {event_type!r}; expected one of {', '.join(EVENT_TYPES)}",
                {"event_type": [f"Must be one of: {', '.join(EVENT_TYPES)}."]},
            )
        if payload is None:
            payload = {}
        elif not isinstance(payload, dict):
            # Any mapping is a payload (the type hints say Mapping); dicts, nearly all, skip the ABC check.
            if not isinstance(payload, Mapping):
                raise InvalidPayload("payload must be an object", {"payload": ["Not a valid mapping type."]})
            payload = dict(payload)
        if refuse_over is not None:
            # Loading keeps every value as it is: a payload too large now is too large loaded. Decided
            # already, it is not loaded, walked, encoded or scrubbed (SPEC S13).
            floor = line_floor(event_type, payload, refuse_over, state.max_depth)
            if floor:
                raise EventTooLarge(f"the event's line would be at least {floor + 1} bytes; the limit is {refuse_over}")
        try:
            loaded: dict[str, Any] = schema.load(payload)
        except ValidationError as exc:
            raise InvalidPayload(f"invalid {event_type} payload: {exc.messages}", {"payload": exc.messages}) from None
        key = state.user_id_key
        # Redaction comes first, but most payloads give it nothing to do, which
        # their line tells: so the line is made first, and made again only if
        # redaction may change it. A user id that redaction never changes (not
        # a container) may be keyed before it.
        keyed_after_redaction = key is not None and isinstance(loaded.get("user_id"), CONTAINERS)
        payload = loaded if key is None else pseudonymise(loaded, key)
        event = (
            AnalyticsEvent(event_type, payload)
            if event_id is None
            else AnalyticsEvent(event_type, payload, str(event_id))
        )
        line: str | None
        try:
            line = event.to_line()
            classes = payload_classes(line)
        except (TypeError, ValueError, RecursionError):
            # It may encode once redacted (a secret-named key holding a set, say).
            line, classes = None, ""
        if line is None or redact_may_change(loaded, line, classes, state.max_depth) or keyed_after_redaction:
            try:
                redacted: dict[str, Any] = redact(loaded, state.max_depth)
            except ValueError as exc:
                raise InvalidPayload(str(exc), {"payload": [str(exc)]}) from None
            # The look may say "may" of a payload redaction leaves as it is (deep, say):
            # its line stands. Comparing, in C, costs less than encoding again.
            if line is None or redacted != loaded or keyed_after_redaction:
                event = replace(event, payload=redacted if key is None else pseudonymise(redacted, key))
                line = _line_of(event)
                classes = payload_classes(line)
        if refuse_over is not None and len(line) >= refuse_over:
            raise _too_large(line, refuse_over)
        if state.scrub_values and may_hold_secrets(classes):
            event = replace(event, payload=scrub(event.payload))
            line = event.to_line()
        return event, line

    @contextmanager
    def record_events(self, app: Flask | None = None) -> Iterator[list[dict[str, Any]]]:
        """Yield a list that collects the events ``app`` (else the current app) writes while the block is open.

        Each event is its line decoded (``event_id``, ``event_type``,
        ``timestamp``, ``payload``, and ``truncated`` when set), as written:
        after redaction, pseudonyms, scrubbing and the size cap. Events of
        other apps, and events refused or dropped, are not in it. Events
        written from any thread are, in the order they were written.
        """
        if app is None:
            state = self._state()
        elif app in self._apps:
            state = self._apps[app]
        else:
            raise RuntimeError("this EventLogger is not registered on that app")
        recorded: list[dict[str, Any]] = []
        with state.lock:
            state.recorders.append(recorded)
        try:
            yield recorded
        finally:
            with state.lock:
                # By identity: another block's list may be equal to this one.
                state.recorders[:] = [other for other in state.recorders if other is not recorded]

    def health(self) -> HealthReport:
        """Counters and sink state of the current app in this process."""
        state = self._state()
        problem = state.sink.problem()
        with state.lock:
            by_type = {event_type: state.logged[event_type] for event_type in EVENT_TYPES}
            dropped, refused, handler_failures = state.dropped, state.refused, state.handler_failures
        report: HealthReport = {
            "status": "healthy" if problem is None else "unhealthy",
            "scope": "process",
            "telemetry_enabled": state.enabled,
            "events_logged": sum(by_type.values()),
            "events_by_type": by_type,
            "events_dropped": dropped,
            "events_refused": refused,
            "events_failed": state.sink.failed,
            "handler_failures": handler_failures,
            "event_types": list(EVENT_TYPES),
            "backlog": {"depth": state.sink.depth(), "capacity": state.sink.capacity},
            "rate_limiter": _rate_limiter_state(),
        }
        if problem is not None:
            report["reason"] = problem
        return report

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until the current app's backlog, if any, is on the stream."""
        flushed: bool = self._state().sink.flush(timeout)
        return flushed

    def shutdown(self, timeout: float = 10.0) -> None:
        """Drain and close the current app's sink; later events are refused."""
        self._state().sink.close(timeout)

    def _state(self) -> _AppTelemetry:
        try:
            return self._apps[this_app()]
        except KeyError:
            raise RuntimeError("this EventLogger is not registered on the current app") from None

    def _drop(self, state: _AppTelemetry, event_type: str, reason: str) -> None:
        now = time.monotonic()
        metrics.EVENTS_DROPPED.inc()
        with state.lock:
            state.dropped += 1
            state.unwarned_drops += 1
            due = state.last_warning is None or now - state.last_warning >= state.warn_interval
            if not due:
                return
            state.last_warning, count, state.unwarned_drops = now, state.unwarned_drops, 0
        current_app.logger.warning("telemetry: dropped %d event(s), the latest a %s: %s", count, event_type, reason)


def _too_large(line: str, max_bytes: int) -> EventTooLarge:
    return EventTooLarge(f"the event's line would be {len(line) + 1} bytes; the limit is {max_bytes}")


def _record(recorders: Iterable[list[dict[str, Any]]], lines: Iterable[str]) -> None:
    """Append each of ``lines``, decoded, to each open ``record_events`` list."""
    events = [json.loads(line) for line in lines]
    for recorded in recorders:
        recorded.extend(events)


def _line_of(event: AnalyticsEvent) -> str:
    try:
        return event.to_line()
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidPayload(
            f"payload is not JSON-serialisable: {exc}",
            {"payload": ["Values must be JSON strings, numbers, booleans, null, arrays or objects."]},
        ) from None


def _rate_limiter_state() -> str:
    # Registered beside the EventLogger by the app factory (analytics/rate_limit.py).
    limiter = current_app.extensions.get("rate_limiter")
    return "off" if limiter is None else limiter.state


def get_event_logger() -> EventLogger:
    """The EventLogger registered on the current app."""
    logger: EventLogger = this_app().extensions["event_logger"]
    return logger
