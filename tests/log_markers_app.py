"""A test app served by gunicorn: the product's app plus routes that fail with a client's text (tests only)."""

import time

from app import create_app
from flask import Blueprint, request

bp = Blueprint("failing", __name__)


@bp.get("/test/crash")
def crash():
    """An unexpected exception whose text quotes what the client sent."""
    raise RuntimeError(f"could not handle {request.query_string.decode()} from {request.headers.get('X-Note')}")


@bp.get("/test/hang")
def hang():
    """A request that outlives gunicorn's worker timeout."""
    time.sleep(60)
    return "late"


def create():
    """The app factory gunicorn is given as ``log_markers_app:create()``."""
    app = create_app()
    app.register_blueprint(bp)
    return app
