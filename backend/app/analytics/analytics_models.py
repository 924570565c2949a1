"""The analytics event as it is stamped, emitted and returned."""

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

EVENT_TYPES = ("ai_block_used", "chapter_visit", "error_event")

# Built once: json.dumps with options other than the defaults builds an encoder per call.
_LINE_ENCODER = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))
_quoted = json.encoder.encode_basestring_ascii
# typeshed does not declare json.encoder's C accelerator (c_make_encoder), hence the ignores.
if json.encoder.c_make_encoder is not None:  # type: ignore[attr-defined]
    # The encoder object that JSONEncoder.encode builds on every call, built
    # once: that build costs about as much as encoding a small payload. The
    # same options as _LINE_ENCODER; no circular-reference check (a cycle ends
    # in a RecursionError, which is refused as a payload the same way).
    _payload_chunks: Callable[[Any, int], list[str]] = json.encoder.c_make_encoder(  # type: ignore[attr-defined]
        None, _LINE_ENCODER.default, _quoted, None, ":", ",", False, False, False
    )

    def _encoded_payload(payload: Any) -> str:
        return "".join(_payload_chunks(payload, 0))
else:  # an interpreter without the C accelerator
    # The same signature as the def above, which mypy takes as the one definition.
    _encoded_payload = _LINE_ENCODER.encode  # type: ignore[assignment]


# Payload values orjson writes exactly as _LINE_ENCODER does, byte for byte:
# not floats (NaN becomes null there, and 1e16 loses its "+"), nor containers
# (which may hold floats), nor subclasses (an IntEnum, a str subclass).
_ORJSON_EXACT = frozenset({str, int, bool, type(None)})


# The formatted UTC second of the last stamp: events arrive many per second.
_stamped_second: tuple[int | None, str] = (None, "")


# The UUID variant digit (RFC 9562: binary 10xx) for each hex digit, keeping its two low bits.
_VARIANT_DIGIT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def _new_event_id() -> str:
    """A random (version 4) UUID, formatted directly: uuid.UUID costs more than the randomness.

    Of the 32 random hex digits, the 13th becomes the version (4) and the
    17th keeps its two low bits under the variant's two high ones: 122
    random bits, as uuid.uuid4 gives.
    """
    text = os.urandom(16).hex()
    return f"{text[:8]}-{text[8:12]}-4{text[13:16]}-{_VARIANT_DIGIT[text[16]]}{text[17:20]}-{text[20:]}"


def _utc_now() -> str:
    """Server time as ISO 8601 UTC with microseconds and ``Z``."""
    global _stamped_second
    second, micros = divmod(time.time_ns() // 1000, 1_000_000)
    stamped, prefix = _stamped_second
    if second != stamped:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _stamped_second = (second, prefix)
    return f"{prefix}.{micros:06d}Z"


@dataclass(slots=True)
class AnalyticsEvent:
    """One accepted event: what the caller sent plus the server's stamp.

    Not changed once made: ``dataclasses.replace`` makes the changed copies
    (not frozen, whose ``__init__`` costs a third of the stamp).
    """

    event_type: str
    payload: dict[str, Any]
    event_id: str = field(default_factory=_new_event_id)
    timestamp: str = field(default_factory=_utc_now)
    truncated: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The event as it appears on the stream, server fields first."""
        record: dict[str, Any] = {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "timestamp": self.timestamp,
            "payload": self.payload,
        }
        if self.truncated:
            record["truncated"] = True
        return record

    def to_line(self) -> str:
        """One compact JSON line, ASCII only so no payload text can break it: ``to_dict`` encoded."""
        if _ORJSON_EXACT.issuperset(map(type, self.payload.values())):
            # orjson costs about half as much, but writes non-ASCII text as it is and DEL
            # unescaped: such a line, an int beyond 64 bits, a lone surrogate or a key that
            # is not a str take the standard encoder below.
            try:
                line = orjson.dumps(self.to_dict())
            except TypeError:
                pass
            else:
                if line.isascii() and b"\x7f" not in line:
                    return line.decode("ascii")
        # Written out rather than encoding to_dict(): a third of the cost, the same text.
        return (
            f'{{"event_id":{_quoted(self.event_id)},"event_type":{_quoted(self.event_type)},'
            f'"timestamp":{_quoted(self.timestamp)},"payload":{_encoded_payload(self.payload)}'
            + (',"truncated":true}' if self.truncated else "}")
        )
