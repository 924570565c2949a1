"""The analytics event as it is stamped, emitted and returned."""

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

EVENT_TYPES = ("ai_block_used", "chapter_visit", "error_event")

# Built once: json.dumps with options other than the defaults builds an encoder per call.
_LINE_ENCODER = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def _new_event_id():
    return str(uuid.uuid4())


def _utc_now():
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class AnalyticsEvent:
    """One accepted event: what the caller sent plus the server's stamp."""

    event_type: str
    payload: dict
    event_id: str = field(default_factory=_new_event_id)
    timestamp: str = field(default_factory=_utc_now)
    truncated: bool = False

    def to_dict(self):
        """The event as it appears on the stream, server fields first."""
        record = {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "timestamp": self.timestamp,
            "payload": self.payload,
        }
        if self.truncated:
            record["truncated"] = True
        return record

    def to_line(self):
        """One compact JSON line, ASCII only so no payload text can break it."""
        return _LINE_ENCODER.encode(self.to_dict())
