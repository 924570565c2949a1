"""The benchmark's redis-server: the tests' ``RedisServer``, and the count of commands it has run."""

import socket
import sys
from pathlib import Path

# The tests' helper (a free loopback port, no persistence, stopped by PID), also when run as a script.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis_server import RedisServer  # noqa: E402


class RedisProcess(RedisServer):
    """``RedisServer`` whose directory is made for it, and which says how many commands it has run."""

    def start(self):
        self.workdir.mkdir(parents=True, exist_ok=True)
        return super().start()

    def commands_processed(self):
        """Commands the server has executed so far (INFO stats), to show the limiter used it."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as connection:
            connection.sendall(b"*2\r\n$4\r\nINFO\r\n$5\r\nstats\r\n")
            reply = connection.makefile("rb")
            head = reply.readline().decode().rstrip("\r\n")
            if not head.startswith("$"):
                raise RuntimeError(f"redis-server answered {head!r}")
            stats = reply.read(int(head[1:])).decode()
        for line in stats.splitlines():
            if line.startswith("total_commands_processed:"):
                return int(line.split(":", 1)[1])
        raise RuntimeError("INFO stats has no total_commands_processed")
