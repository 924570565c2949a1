"""Cross-origin access for browsers (flask-cors), and the allow-list that refuses other origins' POSTs."""

import re
from typing import Any

from flask import Flask, Response, current_app, request
from flask_cors import CORS
from werkzeug.exceptions import Forbidden

API_PREFIX = "/api"

# The request headers the API reads; a preflight may ask for no others.
ALLOWED_HEADERS = ("Content-Type", "Authorization", "X-User-Id")
# A script may read these on a cross-origin answer: when to retry.
EXPOSED_HEADERS = ("Retry-After",)
# How long a browser may reuse a preflight's answer (Chromium caps it at 2 hours).
PREFLIGHT_MAX_AGE = 7200

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def init_cors(app: Flask) -> None:
    """CORS headers on every /api answer, errors and preflights included.

    Called once the blueprints are registered: a preflight is answered with
    the methods of the route it asks about, read from the URL map.
    """
    origins = app.config["CORS_ORIGINS"]
    if origins != "*":
        app.before_request(_refuse_other_origins)
        # Registered before flask-cors, so it runs after it (Flask runs after_request hooks in reverse).
        app.after_request(_vary_on_origin)
    CORS(
        app,
        resources=_route_resources(app),
        origins=origins,
        # "*" is sent as "*", on every answer: the API uses no cookies, so no
        # credentials either. With a list, an answer to a request without an
        # Origin header (curl, a server) names no origin: flask-cors would
        # otherwise put the first listed one there.
        send_wildcard=origins == "*",
        always_send=origins == "*",
        supports_credentials=False,
        allow_headers=list(ALLOWED_HEADERS),
        expose_headers=list(EXPOSED_HEADERS),
        max_age=PREFLIGHT_MAX_AGE,
    )


def _route_resources(app: Flask) -> dict[str | re.Pattern[str], dict[str, Any]]:
    """flask-cors resources giving each /api route its own methods, then one for the rest of /api.

    Routes that serve the same methods share one resource (a pattern naming
    each of them), so that finding a request's resource takes few matches.
    """
    methods_by_path: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(API_PREFIX + "/") and not rule.arguments:
            methods_by_path.setdefault(rule.rule, set()).update((rule.methods or set()) - {"HEAD", "OPTIONS"})
    paths_by_methods: dict[frozenset[str], list[str]] = {}
    for path, methods in methods_by_path.items():
        paths_by_methods.setdefault(frozenset(methods), []).append(path)
    resources: dict[str | re.Pattern[str], dict[str, Any]] = {
        re.compile("(?:" + "|".join(map(re.escape, sorted(paths))) + r")\Z"): {"methods": sorted(methods)}
        for methods, paths in paths_by_methods.items()
    }
    # An unknown /api path: its 404 still carries CORS headers, its preflight allows no method.
    resources[re.compile(re.escape(API_PREFIX) + "/")] = {"methods": []}
    return resources


def _refuse_other_origins() -> None:
    """A POST from an origin not on the list is refused: CORS alone does not stop a beacon."""
    if request.method in _SAFE_METHODS or not request.path.startswith(API_PREFIX + "/"):
        return None
    origin = request.headers.get("Origin")
    # Compared as flask-cors compares it (the list is in browsers' form, case
    # aside), so that an origin is refused exactly when it gets no CORS headers:
    # "http://host/" or "https://host:443" is no origin a browser sends.
    if origin is not None and origin.lower() not in current_app.config["CORS_ORIGINS"]:
        raise Forbidden(f"Requests from the origin {origin!r} are not allowed.")
    return None


def _vary_on_origin(response: Response) -> Response:
    # With a list, whether Access-Control-Allow-Origin is sent depends on Origin,
    # even with one origin listed (where flask-cors adds no Vary of its own).
    varies = {value.strip().lower() for header in response.headers.getlist("Vary") for value in header.split(",")}
    if request.path.startswith(API_PREFIX + "/") and "origin" not in varies:
        response.vary.add("Origin")
    return response
