"""The event sink: the caller writes each line itself, unless the stream would block.

"Accepted" means written (SPEC S2). When the stream takes the line without
blocking, the caller writes it in one write(2) before it returns, so a 202
is an event on the stream (a batch's lines share writes, whole lines up to
PIPE_BUF bytes each time, as the backlog's writer does). Only a stream that would block (a slow reader)
sends lines to a bounded per-process backlog that one writer thread drains
in order; while the backlog holds lines, later lines join it, so a process
never reorders its events. A write that fails (a full disk, a reader that
died) marks the sink failed: events are refused until a write succeeds again.

The stream holds whole lines only. A write the stream takes only in part (a
regular file on a full disk takes the bytes that fit) is a failed write: the
rest of the line is never written, and the fragment never heads a later
line. In a regular file it is overwritten in place with spaces and a newline
(bytes already on disk need no new space, and the bytes written after them,
this worker's or another's, are untouched); elsewhere (a socket, a tty) the
sink owes the stream a newline, paid with its next write.

Lines up to PIPE_BUF stay whole when several workers share a pipe or a file.
The backlog and its thread belong to one process: they are made on first use
after any fork (gunicorn workers, ``--preload`` included) and drained at
interpreter exit, which is how gunicorn workers end on SIGTERM.
"""

import atexit
import collections
import errno
import logging
import os
import select
import socket
import stat
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol, TextIO

from .. import metrics
from ..config import PIPE_BUF
from ..per_process import reset_after_fork

EVENTS_LOGGER_NAME = "app.analytics.events"

# Below gunicorn's default graceful timeout (30 s), so a drain finishes before
# the master would kill the worker.
DRAIN_SECONDS = 10.0

# How often the writer retries the line at the head of the backlog after a failed write.
RETRY_SECONDS = 0.5

# 0 where the platform has no RWF_NOWAIT.
_RWF_NOWAIT: int = getattr(os, "RWF_NOWAIT", 0)

# How a descriptor is written without blocking: pwritev2 with RWF_NOWAIT
# (pipes, sockets), a plain write (our own non-blocking descriptor; regular
# files and devices such as /dev/null, which never block), or not at all:
# the backlog (ttys, named pipes, which refuse RWF_NOWAIT, and the rest).
_NOWAIT, _PLAIN, _BACKLOG = "nowait", "plain", "backlog"

_log = logging.getLogger(__name__)


def events_logger() -> logging.Logger:
    """The logger every app's events reach as one record each, in the caller's thread."""
    logger = logging.getLogger(EVENTS_LOGGER_NAME)
    # Its records are the events themselves: they must not reach whatever the
    # root logger prints (stdout carries event lines only), and INFO is theirs.
    logger.propagate = False
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    return logger


def publish(logger: logging.Logger, *lines: str) -> int:
    """Hand each line's record to the handlers on ``logger``; the number of handler calls that raised.

    No record is built when no handler would see it. A handler that raises
    does not keep the others from the record, nor fail the caller.
    """
    if not logger.handlers or logger.disabled or not logger.isEnabledFor(logging.INFO):
        return 0
    failures = 0
    for line in lines:
        # Logger.info without its stack walk for the caller: the caller is always the EventLogger.
        record = logger.makeRecord(logger.name, logging.INFO, __file__, 0, line, (), None, "publish")
        for handler in logger.handlers:
            if record.levelno >= handler.level:
                try:
                    handler.handle(record)
                except Exception:
                    failures += 1
    return failures


class CutShort(OSError):
    """A write that stopped after the first ``written`` of ``size`` bytes: the line it was in is cut."""

    def __init__(self, written: int, size: int, cause: BaseException | None = None) -> None:
        reason = f" ({_describe(cause)})" if cause is not None else ""
        super().__init__(f"the stream took only {written} of {size} bytes{reason}")
        self.written = written


def write_line(fd: int, data: bytes, finish: bool = True) -> None:
    """Write all of ``data`` to ``fd``, blocking if need be; one write(2) when the stream takes it whole.

    A write that takes part of ``data`` is followed at once by the rest
    when ``finish`` (a pipe, socket or tty whose buffer is full). For a
    regular file (``finish`` false) a short write means the disk is full,
    and the rest is never written: CutShort, as when an error follows a
    partial write.
    """
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            # A descriptor inherited in non-blocking mode: wait for room rather
            # than lose the line; a line up to PIPE_BUF then goes in whole.
            select.select([], [fd], [])
            continue
        except OSError as error:
            if len(view) < len(data):
                raise CutShort(len(data) - len(view), len(data), error) from error
            raise
        if view and not finish:
            raise CutShort(len(data) - len(view), len(data))


class EventStream(Protocol):
    """Where an EventSink writes: a descriptor, or a stand-in text stream that has none."""

    owns_descriptor: bool

    def target(self) -> tuple[int | None, TextIO | None]:
        """The descriptor to write to and None, or None and the stand-in stream."""
        ...

    def close(self) -> None:
        """Release the descriptor, if it is the stream's own."""
        ...


class StdoutStream:
    """Whatever ``sys.stdout`` is at the time of each write.

    Its descriptor is shared with the processes that inherited it, so it is
    never switched to non-blocking mode: a write that must not block asks
    for RWF_NOWAIT instead.
    """

    owns_descriptor = False

    def target(self) -> tuple[int | None, TextIO | None]:
        """The descriptor to write to, or the stand-in stream that has none (a test runner's capture)."""
        stream = sys.stdout
        try:
            return stream.fileno(), None
        except (AttributeError, OSError, ValueError):
            return None, stream

    def close(self) -> None:
        """Stdout is not ours to close."""


class AppendFile:
    """A file opened with O_APPEND, so concurrent workers' lines stay whole.

    The descriptor is this process's own, opened non-blocking: a write to a
    named pipe that is full fails with EAGAIN instead of blocking (regular
    files and devices ignore the flag).
    """

    owns_descriptor = True

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._fd: int | None = None

    def target(self) -> tuple[int | None, TextIO | None]:
        if self._fd is None:
            # Opened by the first write, i.e. in the worker process that writes.
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, 0o666)
        return self._fd, None

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def open_stream(path: str | os.PathLike[str] | None) -> EventStream:
    """The event stream of one app: a file when configured, else stdout."""
    return AppendFile(path) if path else StdoutStream()


class EventSink:
    """Writes finished event lines in order: by the caller when it can, else by a writer thread."""

    def __init__(self, stream: EventStream, capacity: int, stall_seconds: float, max_line: int = PIPE_BUF) -> None:
        self._stream = stream
        self.capacity = capacity
        self._stall_seconds = stall_seconds
        self._max_line = max_line
        self._reset()
        # The backlog, its thread and its lock are this process's: a forked worker makes its own.
        reset_after_fork(self, EventSink._reset)

    def _reset(self) -> None:
        # A fresh lock too: one held by another thread at fork stays held in the child.
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._written = threading.Condition(self._lock)
        self._backlog: collections.deque[bytes] = collections.deque()
        self._thread: threading.Thread | None = None
        self._modes: dict[int, str] = {}
        self._writing_since: float | None = None
        self._error: str | None = None
        # A newline the stream is owed: a cut line's fragment that could not be
        # blanked must end before anything else is written after it.
        self._owed = b""
        self._closed = False
        # Set when a shutdown's drain gave up: the writer stops retrying what it could not write.
        self._abandoned = False
        self.failed = 0

    def write(self, data: bytes) -> bool:
        """Write ``data`` (one line, newline included) or take it into the backlog; False when refused."""
        with self._lock:
            return self._put(data, (data,)) == 1

    def write_lines(self, lines: Sequence[bytes]) -> int:
        """Write ``lines`` (each one line, newline included) in order; how many of them were taken.

        Consecutive lines share one write(2) up to PIPE_BUF bytes, so each
        stays whole beside other workers' lines, as one line alone does. The
        first lines taken are written or in the backlog; the rest are refused,
        as ``write`` refuses a line, by the write or backlog that took only
        the ones before them.
        """
        taken = 0
        with self._lock:
            for group in _groups(lines, PIPE_BUF):
                put = self._put(b"".join(group), group)
                taken += put
                if put < len(group):
                    break
        return taken

    def _put(self, data: bytes, lines: Sequence[bytes]) -> int:
        """Under the lock: write ``data``, the whole ``lines`` joined, or take them into the backlog.

        Returns how many of ``lines`` were taken.
        """
        if self._closed:
            return 0
        if self._backlog:
            # Behind lines already waiting: order within the process.
            return self._enqueue_lines(lines)
        owed, data = len(self._owed), self._owed + data
        try:
            written = self._write_now(data)
        except (OSError, ValueError) as error:
            # ValueError: a stand-in stream that was closed.
            self._fail(error)
            return 0
        if written == 0:
            return self._enqueue_lines(lines)
        self._owed = b""
        if written < len(data):
            # Taken in part: a failed write. The lines before the cut are
            # written whole; the cut one's rest, and the lines after it, never are.
            self._cut(data, owed, written)
            return data.count(b"\n", owed, written)
        self._error = None
        return len(lines)

    def _enqueue_lines(self, lines: Iterable[bytes]) -> int:
        """Put ``lines`` in the backlog, one entry each, while it takes them; how many it took."""
        taken = 0
        for line in lines:
            if not self._enqueue(line):
                break
            taken += 1
        return taken

    def stalled(self) -> bool:
        """True while one write has been blocked longer than the stall limit."""
        since = self._writing_since
        return since is not None and time.monotonic() - since > self._stall_seconds

    def problem(self) -> str | None:
        """Why the sink cannot accept events now, or None."""
        if self._closed:
            return "the event writer has shut down"
        if self._error is not None:
            return f"the event stream failed: {self._error}"
        if self._thread is not None and not self._thread.is_alive():
            return "the event writer thread has stopped"
        if len(self._backlog) >= self.capacity:
            return "the event backlog is full"
        if self.stalled():
            return "the event stream is not accepting writes"
        return None

    def depth(self) -> int:
        """Lines waiting in the backlog."""
        return len(self._backlog)

    def flush(self, timeout: float = DRAIN_SECONDS) -> bool:
        """Wait until the backlog is written; False on timeout or when the writer cannot write it."""
        deadline = time.monotonic() + timeout
        # Under the lock: the writer takes lines off the backlog and counts them in one step.
        with self._lock:
            while self._backlog:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None or not self._thread.is_alive():
                    return False
                # Woken by each write; a writer that died wakes nobody, hence the bound.
                self._written.wait(min(left, 0.05))
            return True

    def close(self, timeout: float = DRAIN_SECONDS) -> None:
        """Write the backlog, stop the writer and close the stream; idempotent.

        Later lines are refused. The drain gives up after ``timeout`` seconds,
        or once the stream has taken nothing for the stall limit, so a stream
        nobody reads cannot keep the process from exiting; the lines it could
        not write are reported on this module's logger.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            self._wake.notify_all()
        if thread is not None:
            self._drain(thread, timeout)
        if self._backlog:
            if self._error is not None:
                reason = f"the event stream failed: {self._error}"
            else:
                reason = "the event stream is not accepting writes"
            _log.warning("telemetry: %d event(s) were not written before shutdown: %s", len(self._backlog), reason)
            if thread is not None and thread.is_alive():
                with self._lock:
                    # No retries after the drain: a failing stream must not be written, nor counted, forever.
                    self._abandoned = True
                    self._wake.notify_all()
                return  # the writer may still be inside a write
        self._stream.close()

    def _drain(self, thread: threading.Thread, timeout: float) -> None:
        """Let the writer empty the backlog and stop, while it makes progress."""
        deadline = time.monotonic() + timeout
        progress, progress_at = len(self._backlog), time.monotonic()
        while thread.is_alive():
            thread.join(0.01)
            now = time.monotonic()
            if len(self._backlog) != progress:
                progress, progress_at = len(self._backlog), now
            if now > deadline or now - progress_at > self._stall_seconds:
                break

    def _write_now(self, data: bytes) -> int:
        """Write without blocking; the number of bytes the stream took (0: it would block)."""
        fd, standin = self._stream.target()
        if fd is None:
            return _write_standin(standin, data)
        mode = self._modes.get(fd) or self._modes.setdefault(fd, self._first_mode(fd))
        if mode is _NOWAIT:
            try:
                return os.pwritev(fd, [data], -1, _RWF_NOWAIT)
            except BlockingIOError:
                return 0
            except OSError as error:
                if error.errno not in (errno.EOPNOTSUPP, errno.ENOTSUP):
                    raise
                # Refused for this kind of descriptor (a regular file, a tty): ask once what it is.
                mode = self._modes[fd] = _fallback_mode(fd)
        if mode is _PLAIN:
            try:
                return os.write(fd, data)
            except BlockingIOError:
                return 0
        return 0

    def _first_mode(self, fd: int) -> str:
        if self._stream.owns_descriptor:
            return _PLAIN
        _send_lines_whole(fd, self._max_line)
        return _NOWAIT if _RWF_NOWAIT else _fallback_mode(fd)

    def _cut(self, data: bytes, start: int, written: int) -> None:
        """A write took ``data[:written]``, ending inside a line: fail, and see that its fragment heads no line.

        ``data[:start]`` was an owed newline; lines before the cut one (the
        backlog writes several at once) were written whole.
        """
        head = max(data.rfind(b"\n", 0, written) + 1, start)
        fragment = data[head:written]
        fd, _ = self._stream.target()
        if fragment and not (fd is not None and _blank(fd, fragment)):
            self._owed = b"\n"
        self._fail(CutShort(written - head, data.index(b"\n", written) + 1 - head))

    def _enqueue(self, data: bytes) -> bool:
        """Put ``data`` in the backlog for the writer; False when the backlog cannot take it.

        A failed sink takes no line while its writer retries lines it could
        not write; with none left (a cut line is dropped, not retried), the
        next line is the writer's next try, so a stream only the writer
        writes (a tty, a named pipe) recovers too.
        """
        if self._error is not None and self._backlog or len(self._backlog) >= self.capacity or self.stalled():
            return False
        if self._thread is None:
            self._start()
        elif not self._thread.is_alive():
            return False
        self._backlog.append(data)
        metrics.BACKLOG_EVENTS.inc()
        self._wake.notify()
        return True

    def _start(self) -> None:
        """The writer thread and exit hook for this process (called once per process: ``_thread`` stays set)."""
        self._thread = threading.Thread(target=self._write_backlog, name="telemetry-writer", daemon=True)
        self._thread.start()
        ref = weakref.ref(self)

        def close_at_exit() -> None:
            sink = ref()
            if sink is not None:
                sink.close()

        atexit.register(close_at_exit)

    def _write_backlog(self) -> None:
        while True:
            with self._lock:
                while not self._backlog and not self._closed:
                    self._wake.wait()
                if not self._backlog or self._abandoned:
                    return
                # Several whole lines may share one write, up to PIPE_BUF.
                group = next(_groups(self._backlog, PIPE_BUF))
                count, owed = len(group), len(self._owed)
                chunk = self._owed + b"".join(group)
                self._writing_since = time.monotonic()
            try:
                fd, standin = self._stream.target()
                if fd is None:
                    _write_standin(standin, chunk)
                else:
                    write_line(fd, chunk, finish=not stat.S_ISREG(os.fstat(fd).st_mode))
            except CutShort as cut:
                with self._lock:
                    self._writing_since = None
                    self._owed = b"" if cut.written >= owed else self._owed
                    # The lines taken whole are written; the cut one is lost, never written again.
                    taken = chunk.count(b"\n", owed, cut.written)
                    lost = cut.written > owed and chunk[cut.written - 1] != ord("\n")
                    for _ in range(taken + lost):
                        self._backlog.popleft()
                    metrics.BACKLOG_EVENTS.dec(taken + lost)
                    self._written.notify_all()
                    if lost:
                        self._cut(chunk, owed, cut.written)
                    else:
                        self._fail(cut)
                    self._wake.wait(RETRY_SECONDS)
                continue
            except (OSError, ValueError) as error:
                with self._lock:
                    self._writing_since = None
                    self._fail(error)
                    # The lines stay at the head: retried until written, or reported at exit.
                    self._wake.wait(RETRY_SECONDS)
                continue
            with self._lock:
                for _ in range(count):
                    self._backlog.popleft()
                metrics.BACKLOG_EVENTS.dec(count)
                self._writing_since = None
                self._error = None
                self._written.notify_all()

    def _fail(self, error: BaseException) -> None:
        """Count a failed write; events are refused until a write succeeds."""
        self.failed += 1
        metrics.SINK_WRITE_FAILURES.inc()
        if self._error is None:
            # Once per failure, not once per refused event.
            _log.warning("telemetry: writing to the event stream failed, events are refused: %s", error)
        self._error = _describe(error)


def _describe(error: BaseException) -> str:
    """``ENOSPC: No space left on device`` for an OSError with an errno, else the error's text."""
    errno_name = errno.errorcode.get(getattr(error, "errno", None) or 0)
    strerror = getattr(error, "strerror", None)
    return f"{errno_name}: {strerror}" if errno_name and strerror else str(error)


def _blank(fd: int, fragment: bytes) -> bool:
    """Overwrite ``fragment``, the last bytes this process wrote to ``fd``, with spaces and a newline; True if done.

    Only in a regular file. Overwriting takes no new space on a full disk,
    and cannot touch another worker's bytes, which all lie after the
    fragment: a line appended in the meantime starts a line of its own. The
    file offset says where the fragment ends; other processes may share it
    (a stdout that is a file), so the bytes there are compared first.
    """
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        return False
    try:
        start = os.lseek(fd, 0, os.SEEK_CUR) - len(fragment)
        # A descriptor without O_APPEND, with which pwrite would append.
        own = os.open(f"/proc/self/fd/{fd}", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if start < 0 or os.pread(own, len(fragment), start) != fragment:
            return False
        return os.pwrite(own, b" " * (len(fragment) - 1) + b"\n", start) == len(fragment)
    except OSError:
        return False
    finally:
        os.close(own)


def _send_lines_whole(fd: int, max_line: int) -> None:
    """Make a Unix stream socket's send buffer big enough to take each line in one piece.

    Linux queues a write to such a socket in pieces of at most half the
    send buffer less 64 bytes, and a non-blocking write takes pieces while
    the buffer is not yet full: with a small buffer (a stdout socket set up
    with a small SO_SNDBUF) a line can be taken in part, or split by another
    worker's line. A line that is one piece is taken whole or not at all.
    The buffer is shared by every worker; it is only ever made larger.
    """
    if not stat.S_ISSOCK(os.fstat(fd).st_mode):
        return
    try:
        with socket.socket(fileno=os.dup(fd)) as sock:
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                return
            # The kernel reports (and keeps) twice the value it is given.
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) < 2 * (max_line + 64):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, max_line + 64)
    except OSError as error:
        _log.warning("telemetry: cannot size the event socket's send buffer: %s", error)


def _groups(lines: Iterable[bytes], limit: int) -> Iterator[list[bytes]]:
    """``lines`` in runs of consecutive lines of at most ``limit`` bytes together (a longer line alone)."""
    group: list[bytes] = []
    size = 0
    for line in lines:
        if group and size + len(line) > limit:
            yield group
            group, size = [], 0
        group.append(line)
        size += len(line)
    if group:
        yield group


def _write_standin(stream: TextIO | None, data: bytes) -> int:
    """Write to a stand-in stream without a descriptor (a test runner's capture), which takes text."""
    assert stream is not None, "a stream's target() gives a stand-in whenever it gives no descriptor"
    stream.write(data.decode("ascii"))
    stream.flush()
    return len(data)


def _fallback_mode(fd: int) -> str:
    """How to write ``fd`` when RWF_NOWAIT cannot: plainly if it never blocks, else through the backlog."""
    mode = os.fstat(fd).st_mode
    if stat.S_ISREG(mode) or stat.S_ISCHR(mode) and not os.isatty(fd):
        return _PLAIN
    return _BACKLOG
