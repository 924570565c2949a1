"""Strict JSON request bodies: one parser that turns every malformed body into a 400."""

import json
import re
from typing import Any, NoReturn

from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import BadRequest, HTTPException, RequestEntityTooLarge, UnsupportedMediaType
from werkzeug.wrappers import Request

from .context import this_app, this_request

_INFINITY = float("inf")
_CONTAINERS = (dict, list)
# A "\uD800"-"\uDFFF" escape; only then can the parsed text hold a lone surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# A JSON string, escapes included (unrolled: no alternation tried per character).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


class StrictJSONProvider(DefaultJSONProvider):
    """Rejects NaN/Infinity, duplicate keys, lone surrogates and deep nesting."""

    # Replies keep the order their schemas declare (problem: type, title, status...).
    sort_keys = False

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        max_depth = self._app.config["JSON_MAX_DEPTH"]
        if isinstance(s, (bytes, bytearray)):
            # Strict UTF-8: json.loads alone would let encoded surrogates through.
            try:
                s = s.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(f"invalid UTF-8 at byte {exc.start}") from None
        # Before parsing: each array or object costs the parser (and the checks
        # below) far more than its two bytes, so a body dense in them is refused
        # unread. Brackets counted in strings too bound the number from above.
        max_containers = self._app.config["JSON_MAX_CONTAINERS"]
        if s.count("[") + s.count("{") > max_containers and _containers(s) > max_containers:
            raise ValueError(f"JSON holds more than {max_containers} arrays and objects")
        try:
            value = _STRICT_DECODER.decode(s) if not kwargs else json.loads(s, **_STRICT_HOOKS, **kwargs)
        except RecursionError:
            raise ValueError(f"JSON nests deeper than {max_depth} levels") from None
        # Counting brackets (in strings too) bounds the depth from above, cheaply.
        if s.count("[") + s.count("{") > max_depth:
            _check_depth(value, max_depth)
        if _SURROGATE_ESCAPE.search(s):
            _check_text(value)
        return value


def json_body(plain_text: bool = False, objects_only: bool = True) -> Any:
    """The request body as a JSON object, or the HTTP error that explains why not.

    With ``plain_text``, a ``text/plain`` body is read as JSON too: it is what
    ``navigator.sendBeacon`` and a fetch without a preflight send. Without
    ``objects_only``, any JSON value is returned, for the schema to judge.
    """
    request = this_request()
    if not (request.is_json or plain_text and request.mimetype == "text/plain"):
        accepted = "application/json or text/plain" if plain_text else "application/json"
        raise UnsupportedMediaType(f"The request body must be JSON (Content-Type: {accepted}).")
    data = _read_body(request)
    try:
        value = this_app().json.loads(data)
    except ValueError as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}.") from None
    if objects_only and not isinstance(value, dict):
        raise BadRequest("The request body must be a JSON object.")
    return value


def _read_body(request: Request) -> bytes:
    """The whole body; a framing the server cannot read (chunks, trailers, a body cut short) is a 400."""
    try:
        data = request.get_data(cache=False)
        if request.content_length is None and len(data) == request.max_content_length:
            # A streamed (chunked) body is cut at the limit without an error; one
            # more byte tells a body of exactly the limit from a longer one.
            if request.environ["wsgi.input"].read(1):
                raise RequestEntityTooLarge()
    except HTTPException:
        raise
    except Exception as exc:
        # What the server raises here (gunicorn's InvalidChunkSize, NoMoreData, a
        # socket's OSError...) is the client's framing, never our fault. Its text
        # quotes what the client sent, so only its name is given back.
        raise BadRequest(f"The request body could not be read: malformed framing ({type(exc).__name__}).") from None
    if request.content_length is not None and len(data) < request.content_length:
        # A server that ends the stream itself (wsgi.input_terminated, as gunicorn
        # does) lets werkzeug read a body cut short as a shorter body.
        raise BadRequest("The request body could not be read: it ended before its Content-Length.")
    return data


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (_INFINITY, -_INFINITY):
        # 1e999 is valid JSON syntax but no number an event line can carry.
        raise ValueError(f"{text} is out of range for a JSON number")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
    return value


def _containers(text: str) -> int:
    """How many arrays and objects ``text`` opens outside its strings."""
    outside = _STRING.sub("", text)
    return outside.count("[") + outside.count("{")


def _check_depth(value: Any, max_depth: int) -> None:
    if isinstance(value, _CONTAINERS) and _nests_deeper(value, max_depth - 1):
        raise ValueError(f"JSON nests deeper than {max_depth} levels")


def _nests_deeper(container: dict[str, Any] | list[Any], levels: int) -> bool:
    """True when ``container`` holds containers more than ``levels`` deep."""
    # Recursion bounded by the limit, and a plain loop over the children: a
    # batch holds far more strings than objects, and a generator per
    # container cost more than the walk.
    for child in container.values() if type(container) is dict else container:
        if isinstance(child, _CONTAINERS) and (levels == 0 or _nests_deeper(child, levels - 1)):
            return True
    return False


def _check_text(value: Any) -> None:
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("lone surrogate escape in a string") from None


_STRICT_HOOKS: dict[str, Any] = {
    "parse_constant": _reject_constant,
    "parse_float": _finite_float,
    "object_pairs_hook": _unique_keys,
}
# Built once: json.loads with hooks builds a new decoder on every call.
_STRICT_DECODER = json.JSONDecoder(**_STRICT_HOOKS)
