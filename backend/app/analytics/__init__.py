"""Analytics and telemetry: events validated, stamped and written as JSON lines."""

from .analytics_models import EVENT_TYPES, AnalyticsEvent
from .event_logger import (
    EventLogger,
    EventRejected,
    EventTooLarge,
    HealthReport,
    InvalidPayload,
    SinkUnavailable,
    UnknownEventType,
    get_event_logger,
)

__all__ = [
    "EVENT_TYPES",
    "AnalyticsEvent",
    "EventLogger",
    "EventRejected",
    "EventTooLarge",
    "HealthReport",
    "InvalidPayload",
    "SinkUnavailable",
    "UnknownEventType",
    "get_event_logger",
]
