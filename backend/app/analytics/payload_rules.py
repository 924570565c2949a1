"""Rules applied to every payload before emission: redaction and the size cap."""

import functools
import json
import re
from dataclasses import replace

REDACTED = "[REDACTED]"

_SECRET_KEY = re.compile(r"password|token|secret|authorization|api[_-]?key", re.IGNORECASE)
_CONTAINERS = (dict, list, tuple)

# Each round shortens the longest string; a payload made of very many short
# values could need more rounds than are useful, and is emptied instead.
_MAX_TRUNCATION_ROUNDS = 64
_ELLIPSIS = "..."


class PayloadTooDeep(ValueError):
    """The payload nests deeper than the configured limit."""


def redact(value, max_depth, depth=0):
    """A copy of ``value`` with every secret-named key's value replaced."""
    if depth > max_depth:
        raise PayloadTooDeep(f"payload nests deeper than {max_depth} levels")
    if isinstance(value, dict):
        return {
            key: REDACTED
            if isinstance(key, str) and _is_secret_key(key)
            else redact(item, max_depth, depth + 1) if isinstance(item, _CONTAINERS) else item
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact(item, max_depth, depth + 1) if isinstance(item, _CONTAINERS) else item for item in value]
    return value


@functools.lru_cache(maxsize=4096)
def _is_secret_key(key):
    # Payloads repeat the same few keys; remembering the verdict skips the regex.
    return _SECRET_KEY.search(key) is not None


def fit_line(event, line, max_bytes):
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


def _longest_string(value, path=()):
    """Path, text and escaped size of the string that takes most of the line."""
    if isinstance(value, str):
        return path, value, len(json.dumps(value)) - 2
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None, None, 0
    best = (None, None, 0)
    for key, item in items:
        found = _longest_string(item, (*path, key))
        if found[1] is not None and found[2] > best[2]:
            best = found
    return best


def _replaced(value, path, new):
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replaced(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replaced(value[head], rest, new)
    return copy
