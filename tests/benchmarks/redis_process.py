"""The benchmark's own redis-server: a free loopback port, no persistence, stopped by PID."""

import socket
import subprocess
import time
from pathlib import Path


class RedisProcess:
    """``redis-server`` on 127.0.0.1, started and stopped by this process."""

    def __init__(self, workdir, boot_timeout=10):
        self.workdir = Path(workdir)
        self.boot_timeout = boot_timeout
        self.process = None
        self.port = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.process = subprocess.Popen(
            [
                "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
            ],
            stdout=open(self.workdir / "redis.log", "wb"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + self.boot_timeout
        while True:
            try:
                if self.command("PING") == "PONG":
                    return self
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start; see {self.workdir / 'redis.log'}")
            time.sleep(0.05)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def commands_processed(self):
        """Commands the server has executed so far (INFO stats), to show the limiter used it."""
        for line in self.command("INFO", "stats").splitlines():
            if line.startswith("total_commands_processed:"):
                return int(line.split(":", 1)[1])
        raise RuntimeError("INFO stats has no total_commands_processed")

    def command(self, *words):
        """Send one command in RESP; returns a simple or bulk string reply."""
        request = f"*{len(words)}\r\n" + "".join(f"${len(word)}\r\n{word}\r\n" for word in words)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as connection:
            connection.sendall(request.encode())
            reply = connection.makefile("rb")
            head = reply.readline().decode().rstrip("\r\n")
            if head.startswith("+"):
                return head[1:]
            if head.startswith("$"):
                return reply.read(int(head[1:]) + 2)[:-2].decode()
            raise RuntimeError(f"redis-server answered {head!r}")


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
