"""The event sink: a bounded queue drained onto the event logger by one thread.

Requests only enqueue a finished line, so a slow or stalled stream never holds
a request. The queue and its writer thread belong to one process: they are
made on first use after any fork (gunicorn workers, ``--preload`` included)
and drained at interpreter exit, which is how gunicorn workers end on SIGTERM.
"""

import atexit
import logging
import os
import queue
import sys
import threading
import time
import weakref

EVENTS_LOGGER_NAME = "app.analytics.events"

# Below gunicorn's default graceful timeout (30 s), so a drain finishes before
# the master would kill the worker.
DRAIN_SECONDS = 10.0

# Once the queue is empty the writer lets lines gather this long before it
# waits again: woken per line, it takes a thread switch from every request
# (a fifth of a busy worker's time in py-spy); woken per batch, it does not.
GATHER_SECONDS = 0.02

_STOP = object()


def events_logger():
    """The parent logger every app's events pass through exactly once."""
    logger = logging.getLogger(EVENTS_LOGGER_NAME)
    # Each app's child logger writes to its own stream; propagating further
    # would copy event lines into whatever the root logger prints.
    logger.propagate = False
    return logger


class _ReportingHandlerMixin:
    """Counts write failures instead of printing a traceback per event."""

    on_error = None

    def handleError(self, record):
        if self.on_error is not None:
            self.on_error(sys.exc_info()[1])


class StdoutHandler(_ReportingHandlerMixin, logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is at the time of each write."""

    def __init__(self):
        logging.Handler.__init__(self)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):
        pass  # always the current sys.stdout


class AppendFileHandler(_ReportingHandlerMixin, logging.FileHandler):
    """Appends to a file; O_APPEND keeps concurrent workers' lines whole."""

    def __init__(self, path):
        super().__init__(path, mode="a", encoding="ascii")


def make_handler(path):
    """The handler for one app's stream: a file when configured, else stdout."""
    handler = AppendFileHandler(path) if path else StdoutHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


def app_logger(handler):
    """A child of ``app.analytics.events`` that writes to one app's stream.

    It is made directly rather than through ``logging.getLogger`` so that it
    is not registered for the life of the process: it lives and dies with the
    app that owns it, and two apps never share one.
    """
    logger = logging.Logger(f"{EVENTS_LOGGER_NAME}.app", logging.INFO)
    logger.parent = events_logger()
    logger.addHandler(handler)
    return logger


class EventSink:
    """Accepts finished event lines without blocking and writes them in order."""

    def __init__(self, logger, capacity, stall_seconds):
        self._logger = logger
        self.capacity = capacity
        self._stall_seconds = stall_seconds
        self._lock = threading.Lock()
        self.failed = 0
        self._reset()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (sink := ref()) and sink._reset())
        for handler in logger.handlers:
            handler.on_error = self._count_failure

    def _reset(self):
        self._queue = None
        self._thread = None
        self._writing_since = None
        self._closed = False
        self.failed = 0

    def submit(self, line):
        """Queue ``line`` for writing; False when the sink cannot take it now."""
        pending = self._queue or self._start()
        if pending is None or self.stalled():
            return False
        try:
            pending.put_nowait(line)
        except queue.Full:
            return False
        return True

    def stalled(self):
        """True while one write has been blocked longer than the stall limit."""
        since = self._writing_since
        return since is not None and time.monotonic() - since > self._stall_seconds

    def state(self):
        """Depth, capacity and whether the sink can accept events now."""
        pending = self._queue
        depth = pending.qsize() if pending is not None else 0
        if self._closed:
            reason = "the event writer has shut down"
        elif self._thread is not None and not self._thread.is_alive():
            reason = "the event writer thread has stopped"
        elif depth >= self.capacity:
            reason = "the event backlog is full"
        elif self.stalled():
            reason = "the event stream is not accepting writes"
        else:
            reason = None
        return {"depth": depth, "capacity": self.capacity, "problem": reason}

    def flush(self, timeout=DRAIN_SECONDS):
        """Wait until every queued line has been written; False on timeout."""
        pending = self._queue
        deadline = time.monotonic() + timeout
        while pending is not None and pending.unfinished_tasks:
            if time.monotonic() > deadline or not self._thread.is_alive():
                return False
            time.sleep(0.001)
        for handler in self._logger.handlers:
            handler.flush()
        return True

    def close(self, timeout=DRAIN_SECONDS):
        """Drain what is queued, stop the writer and close the stream; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending, thread = self._queue, self._thread
        if pending is not None and thread.is_alive():
            try:
                pending.put(_STOP, timeout=timeout)
            except queue.Full:
                pass
            thread.join(timeout)
        for handler in self._logger.handlers:
            handler.flush()
            if isinstance(handler, logging.FileHandler):
                handler.close()

    def _start(self):
        with self._lock:
            if self._closed:
                return None
            if self._queue is None:
                self._queue = queue.Queue(self.capacity)
                self._thread = threading.Thread(
                    target=self._write_lines,
                    args=(self._queue,),
                    name="telemetry-writer",
                    daemon=True,
                )
                self._thread.start()
                ref = weakref.ref(self)
                atexit.register(lambda: (sink := ref()) and sink.close())
            return self._queue

    def _write_lines(self, pending):
        while True:
            line = pending.get()
            try:
                if line is _STOP:
                    return
                self._writing_since = time.monotonic()
                self._logger.info(line)
            finally:
                self._writing_since = None
                pending.task_done()
            if pending.empty():
                time.sleep(GATHER_SECONDS)

    def _count_failure(self, error):
        with self._lock:
            self.failed += 1
