"""The current app and request themselves, for code on every request's path.

Each attribute read through Flask's ``current_app`` or ``request`` proxy is a
lookup of its own (about 7,500 instructions); taking the object once and
reading from it costs one.
"""

from flask import Flask, Request, current_app, request

# Flask types current_app and request as the objects they stand for, not as the
# LocalProxy they are, hence the ignores on _get_current_object.


def this_app() -> Flask:
    """The app handling the current request or CLI command, not a proxy to it."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    return app


def this_request() -> Request:
    """The request being handled, not a proxy to it."""
    current: Request = request._get_current_object()  # type: ignore[attr-defined]
    return current
