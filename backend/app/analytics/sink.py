"""The event sink: a bounded queue drained onto the event logger by one thread.

Requests only enqueue a finished line, so a slow or stalled stream never holds
a request. The queue and its writer thread belong to one process: they are
made on first use after any fork (gunicorn workers, ``--preload`` included)
and drained at interpreter exit, which is how gunicorn workers end on SIGTERM.
Each line goes to the stream's file descriptor in one write(2), unbuffered:
lines up to PIPE_BUF stay whole when several workers share a pipe or a file,
and nothing is left to flush at exit.
"""

import atexit
import logging
import os
import queue
import select
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

_log = logging.getLogger(__name__)


def events_logger():
    """The parent logger every app's events pass through exactly once."""
    logger = logging.getLogger(EVENTS_LOGGER_NAME)
    # Each app's child logger writes to its own stream; propagating further
    # would copy event lines into whatever the root logger prints.
    logger.propagate = False
    return logger


def write_line(fd, data):
    """Write ``data`` to ``fd`` in one write(2) whenever the stream takes it whole."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            # A descriptor inherited in non-blocking mode: wait for room rather
            # than lose the line; a line up to PIPE_BUF then goes in whole.
            select.select([], [fd], [])


class LineHandler(logging.Handler):
    """Writes each record as one line straight to a file descriptor; failures are counted.

    Nothing is buffered, so nothing is left to flush at exit, and no lock is
    held while writing: a writer stuck on a stream nobody reads would
    otherwise hang ``logging.shutdown()`` when the process exits.
    """

    on_error = None

    def handle(self, record):
        if self.filter(record):
            self.emit(record)
        return True

    def emit(self, record):
        try:
            self.write((self.format(record) + "\n").encode("ascii"))
        except Exception:
            self.handleError(record)

    def handleError(self, record):
        if self.on_error is not None:
            self.on_error(sys.exc_info()[1])


class StdoutHandler(LineHandler):
    """Writes to whatever ``sys.stdout`` is at the time of each write."""

    def write(self, data):
        stream = sys.stdout
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):
            # A stand-in without a descriptor, e.g. a test runner's capture.
            stream.write(data.decode("ascii"))
            stream.flush()
            return
        write_line(fd, data)


class AppendFileHandler(LineHandler):
    """Appends to a file opened with O_APPEND, so concurrent workers' lines stay whole."""

    def __init__(self, path):
        super().__init__()
        self.path = os.fspath(path)
        self._fd = None

    def write(self, data):
        if self._fd is None:
            # Opened by the first write, i.e. in the worker process that writes.
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        write_line(self._fd, data)

    def close(self):
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        super().close()


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
        self._reset()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (sink := ref()) and sink._reset())
        for handler in logger.handlers:
            handler.on_error = self._count_failure

    def _reset(self):
        # A fresh lock too: one held by another thread at fork stays held in the child.
        self._lock = threading.Lock()
        self._queue = None
        self._thread = None
        self._writing_since = None
        self._closed = False
        self._queued = 0
        self._handled = 0
        self.failed = 0

    def submit(self, line):
        """Queue ``line`` for writing; False when the sink cannot take it now."""
        # Under the lock, so that close() never misses a line queued as it starts.
        with self._lock:
            pending = self._queue if self._queue is not None else self._start()
            if pending is None or not self._thread.is_alive() or self.stalled():
                return False
            try:
                pending.put_nowait(line)
            except queue.Full:
                return False
            self._queued += 1
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
        return True

    def close(self, timeout=DRAIN_SECONDS):
        """Write what is queued, stop the writer and close the stream; idempotent.

        Later lines are refused. The drain gives up after ``timeout`` seconds,
        or once the stream has taken nothing for the stall limit, so a stream
        nobody reads cannot keep the process from exiting; the lines it could
        not write are reported on this module's logger.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending, thread = self._queue, self._thread
        if pending is not None and not self._drain(pending, thread, timeout):
            _log.warning(
                "telemetry: %d event(s) were not written before shutdown: %s",
                self._queued - self._handled,
                "the event writer thread has stopped"
                if not thread.is_alive()
                else "the event stream is not accepting writes",
            )
            if thread.is_alive():
                return  # the writer still holds the stream
        for handler in self._logger.handlers:
            handler.close()

    def _drain(self, pending, thread, timeout):
        """Let the writer empty the queue and stop; True once every line is handled."""
        deadline = time.monotonic() + timeout
        progress, progress_at = self._handled, time.monotonic()
        stop_queued = False
        while thread.is_alive():
            if not stop_queued:
                try:
                    pending.put_nowait(_STOP)
                    stop_queued = True
                except queue.Full:
                    pass  # nothing new is queued once closed, so room will come
            thread.join(0.01)
            now = time.monotonic()
            if self._handled != progress:
                progress, progress_at = self._handled, now
            if now > deadline or now - progress_at > self._stall_seconds:
                break
        return self._handled == self._queued

    def _start(self):
        """The queue, its writer thread and exit hook for this process; None once closed."""
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
        logger = self._logger
        while True:
            line = pending.get()
            if line is _STOP:
                pending.task_done()
                return
            self._writing_since = time.monotonic()
            try:
                if logger.isEnabledFor(logging.INFO):
                    # Logger.info without its stack walk for the caller, which is
                    # always this loop: a third of the cost of a record.
                    logger.handle(
                        logger.makeRecord(logger.name, logging.INFO, __file__, 0, line, None, None, "_write_lines")
                    )
            except Exception as error:
                # A handler attached to the events logger failed; the next line may not.
                self._count_failure(error)
            finally:
                self._writing_since = None
                self._handled += 1
                pending.task_done()
            if pending.empty():
                time.sleep(GATHER_SECONDS)

    def _count_failure(self, error):
        with self._lock:
            self.failed += 1
