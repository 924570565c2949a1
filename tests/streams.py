"""Real streams that stand in for a slow, stalled or failing event stream in tests."""

import fcntl
import os
import select
import struct
import termios
import threading
import time
from pathlib import Path

from event_lines import parse_event_lines


class UnreadPipe:
    """A named pipe for an app's event stream that nobody reads until ``start_reading``.

    ``fill`` makes it full at once (with blank lines, which are no events), so
    the next write to it would block, as with a log shipper that stopped reading.
    """

    def __init__(self, path):
        self.path = Path(path)
        os.mkfifo(self.path)
        # Open first: a writer's open of a named pipe waits for a reader.
        self._read_fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        self._received = bytearray()
        # Held while a chunk goes from the pipe to ``_received``.
        self._lock = threading.Lock()
        self._read_more = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._reader = None

    def fill(self):
        fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
        try:
            while True:
                os.write(fd, b"\n" * 4096)
        except BlockingIOError:
            return self
        finally:
            os.close(fd)

    def start_reading(self):
        """Read from now on, like a log shipper that resumes."""
        if self._reader is None:
            self._reader = threading.Thread(target=self._read, name="pipe-reader", daemon=True)
            self._reader.start()

    def lines(self, timeout=10.0):
        """Every event line written to the pipe so far, parsed.

        Once reading has started, waits (at most ``timeout`` seconds) until the
        reader has taken everything the pipe holds: what a writer has written
        (``flush()`` returned) is then in the list, however late the reader
        thread runs.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._reader is not None and self._unread():
                left = deadline - time.monotonic()
                assert left > 0, f"the pipe's reader left {self._unread()} bytes unread for {timeout} s"
                self._read_more.wait(left)
            return parse_event_lines(bytes(self._received), skip_blank=True)

    def close(self):
        self._stop.set()
        if self._reader is not None:
            self._reader.join(5)
        os.close(self._read_fd)

    def _unread(self):
        """Bytes in the pipe that nobody has read yet."""
        return struct.unpack("i", fcntl.ioctl(self._read_fd, termios.FIONREAD, bytes(4)))[0]

    def _read(self):
        while not self._stop.is_set():
            if not select.select([self._read_fd], [], [], 0.05)[0]:
                continue
            # Read and keep in one step, so that ``lines`` never sees an empty
            # pipe while a chunk is on its way to ``_received``.
            with self._lock:
                try:
                    chunk = os.read(self._read_fd, 65536)
                except BlockingIOError:
                    continue
                self._received += chunk
                self._read_more.notify_all()
            if not chunk:
                self._stop.wait(0.01)  # no writer has it open right now
