"""The textbook backend's application factory."""

from collections.abc import Mapping
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from . import metrics
from .analytics import EventLogger, bots, rate_limit
from .analytics.telemetry_router import bp as telemetry_bp
from .api.ai_blocks import bp as ai_blocks_bp
from .api.docs import bp as docs_bp
from .config import DEFAULTS, validate_app_config
from .cors import init_cors
from .errors import register_error_handlers
from .gunicorn_logging import install_filter
from .json_body import StrictJSONProvider


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Create the app: defaults, then ``config``, then ``FLASK_*`` environment variables."""
    app = Flask(__name__)
    app.json = StrictJSONProvider(app)
    app.config.from_mapping(DEFAULTS)
    if config is not None:
        app.config.from_mapping(config)
    app.config.from_prefixed_env()
    # Refuse to start on a bad value rather than fail on the first request.
    validate_app_config(app.config)

    # The app's own lines (tracebacks included) scrubbed like event payloads (S11).
    install_filter(app.logger)
    EventLogger(app)
    rate_limit.init_app(app)
    bots.init_app(app)
    register_error_handlers(app)
    metrics.init_app(app)
    # The client address (the rate limit's key) is the TCP peer unless proxies are trusted.
    if app.config["TRUSTED_PROXY_HOPS"]:
        # Flask's documented way to add WSGI middleware; its stubs declare wsgi_app a method.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app.config["TRUSTED_PROXY_HOPS"])  # type: ignore[method-assign]

    app.register_blueprint(telemetry_bp)
    app.register_blueprint(ai_blocks_bp)
    app.register_blueprint(docs_bp)
    # After the blueprints: a preflight is answered with its route's own methods.
    init_cors(app)
    return app
