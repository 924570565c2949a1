"""Gunicorn settings for every serve command: an error log that names no client, and Prometheus' multiprocess mode.

Used as ``gunicorn --config backend/gunicorn.conf.py ... wsgi:app`` with
``PROMETHEUS_MULTIPROC_DIR`` set in the environment, so that prometheus_client
finds it before it is first imported (the master imports it too under
``--preload``). Without the variable these hooks do nothing.

Each server keeps its figures in a directory of its own under the one the
variable names (``server-<pid>-<random>``), so that two servers started with
the same command, on one host, never count into or empty each other's files.
"""

import fcntl
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

# Set once this server has chosen its own directory: gunicorn reads this file
# again on HUP, in the same master, which must keep that directory.
_SERVER_DIRECTORY = "TEXTBOOK_METRICS_SERVER_DIR"
_SERVER_PREFIX = "server-"
_STARTING_PREFIX = ".starting-"
# Locked by the master for as long as it or any of its workers lives (they inherit the descriptor).
_LOCK_NAME = "server.lock"


def _make_directory(path: str) -> None:
    """Create the metrics directory if it is missing.

    One that cannot be created is left to the app's startup check, which
    says why in one line (in the master under --preload, else in each worker).
    """
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError:
        pass


def _remove_if_dead(directory: Path) -> None:
    """Remove a server's directory under the base once no process of that server holds its lock."""
    try:
        lock = os.open(directory / _LOCK_NAME, os.O_RDWR)
    except OSError:
        return  # another starting server is removing it, or it is not ours to judge
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        shutil.rmtree(directory, ignore_errors=True)
    except BlockingIOError:
        pass  # its server is alive
    finally:
        os.close(lock)


def _own_directory(base: str) -> str:
    """A new directory for this server's figures under ``base``, locked while the server lives.

    It is made under a hidden name, locked, then renamed: a server starting
    at the same moment never sees it unlocked. Directories of servers that
    are gone (killed, so never cleaned on exit) are removed on the way.
    """
    for directory in Path(base).glob(f"{_SERVER_PREFIX}*"):
        _remove_if_dead(directory)
    starting = Path(tempfile.mkdtemp(prefix=f"{_STARTING_PREFIX}{os.getpid()}-", dir=base))
    lock = os.open(starting / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)  # never closed: the lock lasts as long as the server's processes
    own = starting.with_name(_SERVER_PREFIX + starting.name.removeprefix(_STARTING_PREFIX))
    starting.rename(own)
    return str(own)


def _use_own_metrics_directory() -> None:
    """Point PROMETHEUS_MULTIPROC_DIR at a directory of this server's own, made under the one it names.

    A base that cannot be made or written is left as it is, for on_starting
    and the app to report in one line.
    """
    base = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not base:
        return
    # A master started by USR2 inherits the old master's settings, but not its directory.
    reloaded = os.environ.get(_SERVER_DIRECTORY) == base and "GUNICORN_PID" not in os.environ
    if reloaded:
        return
    _make_directory(base)
    try:
        own = _own_directory(base)
    except OSError:
        return
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = own
    os.environ[_SERVER_DIRECTORY] = own


# Here rather than in on_starting: --preload imports the app (and
# prometheus_client) before on_starting runs, and every process of the
# server (workers are forked) must see the same directory.
_use_own_metrics_directory()


def on_starting(server: Any) -> None:
    """Stop the master, in one line, before any worker starts, when the metrics directory cannot be made.

    Workers that all failed at once could make gunicorn halt with a traceback of its own.
    """
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path and not os.path.isdir(path):
        print(
            f"Configuration error: PROMETHEUS_MULTIPROC_DIR {path!r} does not exist and cannot be created",
            file=sys.stderr,
        )
        raise SystemExit(4)  # what gunicorn itself exits with when the app cannot load


def child_exit(server: Any, worker: Any) -> None:
    """A worker that exited no longer counts towards the live gauges (the backlog)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    """The server's own metrics directory goes with it: its figures describe a server that no longer runs."""
    own = os.environ.get(_SERVER_DIRECTORY)
    if own and own == os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shutil.rmtree(own, ignore_errors=True)


# gunicorn's error log through the app's scrubbing: no client address, query,
# header value or token in its lines (README, privacy). The class is loaded by
# the master, before the app, so backend/ must be importable here.
sys.path.insert(0, str(Path(__file__).resolve().parent))
logger_class = "app.gunicorn_logging.ScrubbingLogger"
