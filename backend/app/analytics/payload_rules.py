"""What is done to every payload before it is written, in the order it runs.

1. ``redact``: values of secret-named keys become ``"[REDACTED]"``.
2. ``pseudonymise``: the top-level ``user_id`` becomes a keyed pseudonym
   (when ``TELEMETRY_USER_ID_KEY`` is set). It runs before scrubbing, so a
   user id that is an e-mail address gets its own pseudonym rather than the
   pseudonym of ``"[EMAIL]"`` that every such reader would share.
3. ``scrub`` (``scrubbing.py``): e-mail addresses, tokens, card numbers and
   URL secrets inside string values are replaced (``TELEMETRY_SCRUB_VALUES``).
4. ``fit_line``: the size cap, on the line of the stamped event.

``line_floor`` bounds the line's size from below before any of them runs, so
that the HTTP routes refuse (413) a payload already too large without
walking, encoding or scrubbing it (SPEC S13).

``EventLogger._build`` calls them in this order; nothing else changes a
payload. Most payloads hold no secret-named key and nothing to scrub, which a
look at their encoded line tells (``redact_may_change``,
``scrubbing.may_hold_secrets``) for less than walking them: the walks run only
when the look says they could change something.
"""

import functools
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import orjson

from .analytics_models import AnalyticsEvent

REDACTED = "[REDACTED]"
# Where a string is in a payload: the keys and list positions that lead to it.
_Path = tuple[str | int, ...]

_SECRET_KEY = re.compile(r"password|token|secret|authorization|api[_-]?key", re.IGNORECASE)
# What redaction walks into; a user_id of these types is keyed once redacted, not before.
CONTAINERS = (dict, list, tuple)

# Each round shortens the longest string; a payload made of very many short
# values could need more rounds than are useful, and is emptied instead.
_MAX_TRUNCATION_ROUNDS = 64
_ELLIPSIS = "..."


class PayloadTooDeep(ValueError):
    """The payload nests deeper than the configured limit."""


def redact(value: Any, max_depth: int, depth: int = 0) -> Any:
    """``value`` with every secret-named key's value replaced.

    A container that changes is copied; one that holds neither a container
    nor a secret-named key is returned as it is, judged by the types of its
    items at C speed rather than one item at a time (a list of 30,000
    numbers costs 0.5 ms instead of 3 ms).
    """
    if depth > max_depth:
        raise PayloadTooDeep(f"payload nests deeper than {max_depth} levels")
    if isinstance(value, dict):
        if _SCALARS.issuperset(map(type, value.values())):
            # Only keys to judge: the redacted values replace theirs in a copy, in place.
            redactions = _redactions(value)
            return {**value, **redactions} if redactions else value
        return {
            key: REDACTED
            if isinstance(key, str) and _is_secret_key(key)
            else redact(item, max_depth, depth + 1)
            if isinstance(item, CONTAINERS)
            else item
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        if _SCALARS.issuperset(map(type, value)):
            return value
        return [redact(item, max_depth, depth + 1) if isinstance(item, CONTAINERS) else item for item in value]
    return value


def _redactions(mapping: Mapping[Any, Any]) -> Mapping[str, str]:
    """``REDACTED`` for each secret-named key of ``mapping``: what redaction puts in place of its values."""
    # The few sets of keys payloads repeat are remembered; a large one is judged key by key.
    if len(mapping) <= 32:
        return _redactions_of(tuple(mapping))
    return dict.fromkeys((key for key in mapping if isinstance(key, str) and _is_secret_key(key)), REDACTED)


@functools.lru_cache(maxsize=1024)
def _redactions_of(keys: tuple[Any, ...]) -> Mapping[str, str]:
    # Read-only for its callers, who merge it into copies.
    return MappingProxyType(
        dict.fromkeys((key for key in keys if isinstance(key, str) and _is_secret_key(key)), REDACTED)
    )


# What _SECRET_KEY looks for, as scrubbing.payload_classes spells it: lower
# case, "_" as itself and "-" as "0". An ASCII key is on the line as it is (JSON
# escapes none of these letters); any other character is a \u escape there.
# Written out in redact_may_change: a generator over these costs five times more.
_SECRET_WORDS = ("password", "token", "secret", "authorization", "apikey", "api_key", "api0key")


def redact_may_change(payload: Mapping[str, Any], line: str, classes: str, max_depth: int) -> bool:
    r"""False when ``redact`` returns ``payload``, whose event line is ``line``, as it is and does not raise.

    A payload that holds no container (most do not) nests no deeper than
    itself, and only its own keys can name a secret: they say, and the
    verdict for each set of keys is remembered. Any other payload is judged
    by a look at its line, whose ``scrubbing.payload_classes`` are
    ``classes``: True when a key may be secret-named (a value's text may look
    like one, and a \u escape may hide a letter that matches one case-blind),
    or when the payload may nest deeper than ``max_depth``: a payload of n
    containers nests at most n - 1 levels below itself, and its brackets,
    counted in strings too, bound n from above (the line's own object is one
    more).
    """
    if _SCALARS.issuperset(map(type, payload.values())):
        return bool(_redactions(payload))
    return (
        line.count("{") + line.count("[") - 2 > max_depth
        or "\\u" in line
        or "password" in classes
        or "token" in classes
        or "secret" in classes
        or "authorization" in classes
        or "apikey" in classes
        or "api_key" in classes
        or "api0key" in classes
    )


_SCALARS = frozenset({str, int, float, bool, type(None)})


@functools.lru_cache(maxsize=4096)
def _is_secret_key(key: str) -> bool:
    # Payloads repeat the same few keys; remembering the verdict skips the regex.
    return _SECRET_KEY.search(key) is not None


ANONYMOUS = "anonymous"
PSEUDONYM_PREFIX = "u_"
_PSEUDONYM_HEX_DIGITS = 32


def pseudonymise(payload: dict[str, Any], key: bytes) -> dict[str, Any]:
    """The payload with its top-level ``user_id`` replaced by ``pseudonym(key, user_id)``.

    ``"anonymous"`` and a null ``user_id`` stay as they are.
    """
    user_id = payload.get("user_id")
    if user_id is None or user_id == ANONYMOUS:
        return payload
    return {**payload, "user_id": pseudonym(key, user_id)}


def pseudonym(key: bytes, user_id: object) -> str:
    """``"u_"`` and the first 32 hex digits of HMAC-SHA256(key, user_id).

    Stable while the key is, not reversible without it. A user id that is not
    a string (an extra key of an error_event, say) is keyed by its JSON text.
    """
    if not isinstance(user_id, str):
        user_id = json.dumps(user_id, sort_keys=True, separators=(",", ":"), default=str)
    return _keyed_pseudonym(key, user_id)


@functools.lru_cache(maxsize=4096)
def _keyed_pseudonym(key: bytes, user_id: str) -> str:
    # The same readers come back event after event; one HMAC costs more than
    # the rest of the event's payload rules together.
    digest = hmac.digest(key, user_id.encode("utf-8", "surrogatepass"), hashlib.sha256)
    return PSEUDONYM_PREFIX + digest.hex()[:_PSEUDONYM_HEX_DIGITS]


def fit_line(event: AnalyticsEvent, line: str, max_bytes: int) -> tuple[AnalyticsEvent, str]:
    """The event and its line, shortening its longest strings to fit ``max_bytes``.

    ``max_bytes`` counts the trailing newline. The line is ASCII, so its
    length in characters is its length in bytes.
    """
    if len(line) < max_bytes:
        return event, line
    payload = event.payload
    for _ in range(_MAX_TRUNCATION_ROUNDS):
        excess = len(line) + 1 - max_bytes
        if excess <= 0:
            return event, line
        path, longest, size = _longest_string(payload)
        if longest is None or len(longest) <= len(_ELLIPSIS):
            break
        # Keep the share of characters that fits once escaped; at least halve
        # it so every round makes progress.
        fitting = max(0, size - excess - len(_ELLIPSIS))
        keep = min(len(longest) * fitting // size, len(longest) // 2)
        payload = _replaced(payload, path, longest[:keep] + _ELLIPSIS)
        event = replace(event, payload=payload, truncated=True)
        line = event.to_line()
    event = replace(event, payload={}, truncated=True)
    return event, event.to_line()


def _longest_string(value: Any, path: _Path = ()) -> tuple[_Path, str | None, int]:
    """Path, text and escaped size of the string that takes most of the line."""
    if isinstance(value, str):
        return path, value, len(json.dumps(value)) - 2
    items: Iterable[tuple[Any, Any]]
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return (), None, 0
    best: tuple[_Path, str | None, int] = ((), None, 0)
    for key, item in items:
        found = _longest_string(item, (*path, key))
        if found[1] is not None and found[2] > best[2]:
            best = found
    return best


# orjson writes a float between 1e-5 and 1e-4 as "0.0000..." where the line's
# encoder writes "1e-05": at most two characters more (measured on 3.6
# million floats of every magnitude); three are allowed for each.
_LONGER_FLOAT = b"0.0000"
# orjson refuses these types rather than writing them another way than the line's encoder would.
_ORJSON_AS_LINE = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS


def line_floor(event_type: str, payload: Mapping[str, Any], limit: int, max_depth: int) -> int:
    """A length of at least ``limit`` that the event line of ``payload`` cannot be shorter than; else 0.

    Whatever ``EventLogger._build`` does to the payload, its line is not
    shorter, and the work is bounded by ``limit`` rather than by the
    payload. The line is ASCII, every other character escaped; orjson
    writes the same JSON as UTF-8 for a fifth of the cost, no longer but
    for a few floats, allowed for. Redaction may shorten the value of any
    secret-named key: the payload's structure (its keys' text, and a
    character at least for each value) is a floor that no redaction
    lowers; under ``limit``, the payload holds few values and is redacted
    to be measured. The top-level ``user_id`` may become a pseudonym of any
    length, so it is left out; scrubbing and truncation run on lines under
    the limit only.
    """
    fields = _server_fields(event_type)
    text = _orjson_text(payload)
    if text is None or len(text) + fields < limit:
        return 0
    # A pseudonym takes the place of a user_id of any shape.
    shape = {**payload, "user_id": None} if type(payload.get("user_id")) in (dict, list) else payload
    floor = _structure_floor(shape, limit - fields) + fields
    if floor >= limit:
        return floor
    try:
        redacted = redact(payload, max_depth)
    except PayloadTooDeep:
        return 0
    if redacted is not payload:
        text = _orjson_text(redacted)
        if text is None:
            return 0
    floor = len(text) + fields - 3 * text.count(_LONGER_FLOAT)
    if "user_id" in redacted:
        floor -= len(_orjson_text(redacted["user_id"]) or b"")
    return floor if floor >= limit else 0


def _structure_floor(value: Any, limit: int) -> int:
    """A length no redaction makes the text of ``value`` shorter than, counted until it reaches ``limit``.

    An object's keys are written as they are (orjson writes the list of
    them in as many characters as they take in the object, less one colon
    each); every value takes a character at least; the values of keys that
    are not secret-named are counted the same way, inside. Each item
    counted adds two characters or more, so no more than ``limit // 2``
    items are looked at one by one.
    """
    if type(value) is dict:
        keys = _orjson_text(list(value))
        if keys is None:
            return 1
        floor = len(keys) + 2 * len(value)
        items: Iterable[tuple[Any, Any]] = value.items()
    elif type(value) is list:
        floor = 2 * len(value) + 1
        items = ((None, item) for item in value)
    else:
        return 1
    for key, item in items:
        if floor >= limit:
            break
        if type(item) in (dict, list) and not (isinstance(key, str) and _is_secret_key(key)):
            floor += _structure_floor(item, limit - floor) - 1
    return floor


def _orjson_text(value: Any) -> bytes | None:
    try:
        return orjson.dumps(value, option=_ORJSON_AS_LINE)
    except orjson.JSONEncodeError:
        return None


@functools.lru_cache(maxsize=16)
def _server_fields(event_type: str) -> int:
    """The length of an event line of ``event_type`` but its payload's text."""
    return len(AnalyticsEvent(event_type, {}).to_line()) - len("{}")


def _replaced(value: Any, path: _Path, new: str) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replaced(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replaced(value[head], rest, new)  # type: ignore[index]  # in a list, the step is an index
    return copy
