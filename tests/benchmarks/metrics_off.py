"""Benchmark only: the production app with its Prometheus counting stubbed out.

The same ``create_app()`` as ``wsgi:app``, but every counter, gauge and
histogram child the app uses is a no-op and the request-timing middleware is not
registered (``/metrics`` is still served). Run next to ``wsgi:app`` it gives
what counting costs a request.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "backend"))

from app import create_app, metrics  # noqa: E402


class _NoOp:
    """Takes every call a prometheus_client child gets, and does nothing."""

    def inc(self, amount=1):
        pass

    def dec(self, amount=1):
        pass

    def observe(self, amount):
        pass


_NOOP = _NoOp()
metrics.EVENTS_ACCEPTED = dict.fromkeys(metrics.EVENTS_ACCEPTED, _NOOP)
metrics.EVENTS_REJECTED = dict.fromkeys(metrics.EVENTS_REJECTED, _NOOP)
metrics.EVENTS_REFUSED = metrics.EVENTS_DROPPED = _NOOP
metrics.SINK_WRITE_FAILURES = metrics.BACKLOG_EVENTS = _NOOP
metrics.init_app = lambda app: app.register_blueprint(metrics.bp)  # no request timing

app = create_app()
