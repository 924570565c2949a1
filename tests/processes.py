"""What the tests' real servers (redis-server, nginx) share: a free loopback port, a stop by PID, a with block."""

import os
import signal
import socket
import subprocess


def free_port():
    """A loopback port nobody listens on now (the kernel's pick)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop_by_pid(process, timeout=10):
    """SIGTERM ``process`` and wait; SIGKILL it (its whole group, when it leads one) if it will not go."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        if os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
        process.wait()


class ServerProcess:
    """A server the tests start (``start()``, returning itself) and stop by PID, as a context manager."""

    process = None

    def start(self):
        raise NotImplementedError

    def stop(self):
        """SIGTERM the server by its PID and wait; SIGKILL it (its group, when it leads one) if it will not go."""
        stop_by_pid(self.process)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
