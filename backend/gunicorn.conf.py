"""Gunicorn settings for production: Prometheus' multiprocess mode across the workers.

Used as ``gunicorn --config backend/gunicorn.conf.py ... wsgi:app`` with
``PROMETHEUS_MULTIPROC_DIR`` set in the environment, so that prometheus_client
finds it before it is first imported (the master imports it too under
``--preload``). Without the variable these hooks do nothing.
"""

import os
import sys
from pathlib import Path


def _make_directory(path):
    """Create the metrics directory if it is missing.

    One that cannot be created is left to the app's startup check, which
    says why in one line (in the master under --preload, else in each worker).
    """
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError:
        pass


if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # The app checks the directory when it is created, which --preload does
    # before on_starting runs. Creating it is all that is safe here: gunicorn
    # reads this file again on HUP, while workers write there.
    _make_directory(os.environ["PROMETHEUS_MULTIPROC_DIR"])


def on_starting(server):
    """Empty the metrics directory before any worker starts: an earlier run's values would add up.

    A directory that cannot be made stops the master here, in one line, before
    any worker starts: workers that all failed at once could make gunicorn
    halt with a traceback of its own.
    """
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        _make_directory(path)
        if not os.path.isdir(path):
            print(
                f"Configuration error: PROMETHEUS_MULTIPROC_DIR {path!r} does not exist and cannot be created",
                file=sys.stderr,
            )
            raise SystemExit(4)  # what gunicorn itself exits with when the app cannot load
        for values in Path(path).glob("*.db"):
            values.unlink()


def child_exit(server, worker):
    """A worker that exited no longer counts towards the live gauges (the backlog)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


# gunicorn's error log through the app's scrubbing: no client address, query,
# header value or token in its lines (README, privacy). The class is loaded by
# the master, before the app, so backend/ must be importable here.
sys.path.insert(0, str(Path(__file__).resolve().parent))
logger_class = "app.gunicorn_logging.ScrubbingLogger"
