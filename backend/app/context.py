"""The current app and request themselves, for code on every request's path.

Each attribute read through Flask's ``current_app`` or ``request`` proxy is a
lookup of its own (about 7,500 instructions); taking the object once and
reading from it costs one.
"""

from flask import current_app, request


def this_app():
    """The app handling the current request or CLI command, not a proxy to it."""
    return current_app._get_current_object()


def this_request():
    """The request being handled, not a proxy to it."""
    return request._get_current_object()
