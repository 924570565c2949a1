"""A real redis-server on a free loopback port, persistence off, stopped by PID; and a port that never answers."""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from processes import ServerProcess, free_port


class RedisServer(ServerProcess):
    """``redis-server`` on 127.0.0.1 with no RDB or AOF files, in its own process.

    It binds a port chosen just before it starts; if another process takes
    that port first, redis-server exits and the next free port is tried.
    """

    def __init__(self, workdir, boot_timeout=10):
        self.workdir = Path(workdir)
        self.boot_timeout = boot_timeout
        self.process = None
        self.port = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        executable = shutil.which("redis-server")
        if executable is None:
            message = "redis-server is not installed (apt-get install -y redis-server)"
            # As for the browser: CI must run these tests; elsewhere they wait for the install.
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(f"CI=true but the Redis tests cannot run: {message}", pytrace=False)
            pytest.skip(message)
        for _ in range(5):
            self.port = free_port()
            if self._launch(executable):
                return self
        raise RuntimeError("redis-server did not start on a free loopback port")

    def start_on_same_port(self):
        """Start again, empty, on the port of the last start (after ``stop``)."""
        if not self._launch(shutil.which("redis-server")):
            raise RuntimeError(f"redis-server could not start again on port {self.port}")
        return self

    def _launch(self, executable):
        self.process = subprocess.Popen(
            [
                executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        return self._wait_until_answering()

    def _wait_until_answering(self):
        deadline = time.monotonic() + self.boot_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False  # the port was taken meanwhile
            if self.command("PING") == "+PONG":
                return True
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server gave no answer on port {self.port} within {self.boot_timeout} s")

    def command(self, *words):
        """Send one command; its first reply line (e.g. ``+PONG``, ``:3``), or None if no answer."""
        request = f"*{len(words)}\r\n" + "".join(f"${len(str(w))}\r\n{w}\r\n" for w in words)
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(request.encode())
                return conn.makefile("rb").readline().decode().strip()
        except OSError:
            return None


class SilentPort:
    """A loopback port whose listen queue takes connections that are never accepted nor answered."""

    def __init__(self):
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(64)
        self.port = self.socket.getsockname()[1]

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def connections(self):
        """How many connections reached the port so far (each is taken off the queue and closed)."""
        self.socket.setblocking(False)
        count = 0
        while True:
            try:
                conn, _ = self.socket.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1

    def close(self):
        self.socket.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
