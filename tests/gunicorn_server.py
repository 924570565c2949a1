"""A real gunicorn serving wsgi:app on a free loopback port, for end-to-end tests."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
_LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")


class GunicornServer:
    """Starts gunicorn (``wsgi:app`` unless told otherwise) on 127.0.0.1:0 and stops it by PID.

    Binding port 0 lets the kernel pick a free port; the port is read back
    from gunicorn's "Listening at" line, so there is no race for it. Stdout
    (the event stream) and stderr go to files in ``workdir`` unless
    ``stdout`` names another target, e.g. a pipe nobody reads. The server is
    ready once ``ready_path`` gets an HTTP answer, whatever its status.
    """

    def __init__(
        self, workdir, *options, workers=2, env=None, stdout=None, boot_timeout=30,
        app="wsgi:app", ready_path="/api/telemetry/health",
    ):
        self.workdir = Path(workdir)
        self.stdout_path = self.workdir / "gunicorn.stdout"
        self.stderr_path = self.workdir / "gunicorn.stderr"
        self.options = ["--workers", str(workers), *options]
        self.env = {name: value for name, value in os.environ.items() if not name.startswith("FLASK_")}
        self.env.update(env or {})
        self.stdout = stdout
        self.boot_timeout = boot_timeout
        self.app = app
        self.ready_path = ready_path
        self.process = None
        self.port = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        command = [
            sys.executable, "-m", "gunicorn",
            "--bind", "127.0.0.1:0",
            "--no-control-socket",
            *self.options,
            self.app,
        ]
        stdout = self.stdout if self.stdout is not None else open(self.stdout_path, "wb")
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=self.env, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL
            )
        if self.stdout is None:
            stdout.close()
        self.port = self._wait_for_port()
        self._wait_until_serving()
        return self

    def stop(self, timeout=30):
        """SIGTERM the master and wait for it; SIGKILL if it will not go. Returns the exit code."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(5)

    def event_lines(self):
        """Every line the server has written to its stdout file, parsed as JSON."""
        return [json.loads(line) for line in self.stdout_path.read_text("ascii").splitlines()]

    def stderr_text(self):
        return self.stderr_path.read_text(errors="replace")

    def request(self, method, path, body=None, headers=None, timeout=10):
        """Send one request; returns (status, headers, parsed JSON body or None)."""
        status, reply_headers, raw = self._send(method, path, body, headers, timeout)
        return status, reply_headers, json.loads(raw) if raw else None

    def _send(self, method, path, body=None, headers=None, timeout=10):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, reply_headers, raw = response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            status, reply_headers, raw = error.code, error.headers, error.read()
        return status, reply_headers, raw

    def _wait_for_port(self):
        deadline = time.monotonic() + self.boot_timeout
        while time.monotonic() < deadline:
            match = _LISTENING.search(self.stderr_text())
            if match:
                return int(match.group(1))
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self.stderr_text()}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gunicorn did not listen within {self.boot_timeout} s:\n{self.stderr_text()}")

    def _wait_until_serving(self):
        deadline = time.monotonic() + self.boot_timeout
        while time.monotonic() < deadline:
            try:
                self._send("GET", self.ready_path, timeout=2)
                return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gunicorn did not serve within {self.boot_timeout} s:\n{self.stderr_text()}")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
