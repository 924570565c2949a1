"""The API's own OpenAPI document, generated from the route contracts."""

from typing import Any

from flask import Blueprint, current_app

from ..openapi import build_spec, responds

bp = Blueprint("docs", __name__, url_prefix="/api")


@bp.get("/openapi.json")
@responds(200, {"type": "object"}, description="The OpenAPI 3 document for every /api route and /metrics.")
def get_openapi() -> dict[str, Any]:
    """Return the OpenAPI document for this API."""
    # The URL map is fixed once the app serves requests, so build it once per app.
    if "openapi" not in current_app.extensions:
        current_app.extensions["openapi"] = build_spec(current_app)
    document: dict[str, Any] = current_app.extensions["openapi"]
    return document
