"""Real streams that stand in for a slow, stalled or failing event stream in tests."""

import json
import os
import select
import threading
from pathlib import Path


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
        self._lock = threading.Lock()
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

    def lines(self):
        """Every event line read so far, parsed."""
        with self._lock:
            return [json.loads(line) for line in bytes(self._received).splitlines() if line.strip()]

    def close(self):
        self._stop.set()
        if self._reader is not None:
            self._reader.join(5)
        os.close(self._read_fd)

    def _read(self):
        while not self._stop.is_set():
            if not select.select([self._read_fd], [], [], 0.05)[0]:
                continue
            try:
                chunk = os.read(self._read_fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                self._stop.wait(0.01)  # no writer has it open right now
            with self._lock:
                self._received += chunk
