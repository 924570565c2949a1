"""A real gunicorn serving wsgi:app on a free loopback port, for end-to-end tests."""

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from event_lines import parse_event_lines

REPO_ROOT = Path(__file__).resolve().parent.parent
_LISTENING = re.compile(r"Listening at: http://(?:127\.0\.0\.1|\[::1\]):(\d+)")


class GunicornServer:
    """Starts gunicorn (``wsgi:app`` unless told otherwise) on 127.0.0.1:0 (or ``host``) and stops it by PID.

    Binding port 0 lets the kernel pick a free port; the port is read back
    from gunicorn's "Listening at" line, so there is no race for it. Once
    stopped, ``start`` binds that same port again (an API back after an
    outage, at the address its clients know) and appends to the same stdout
    file. Stdout (the event stream) and stderr go to files in ``workdir`` unless
    ``stdout`` names another target, e.g. a ``StdoutPipe``. The server is
    ready once ``ready_path`` gets an HTTP answer, whatever its status.
    Gunicorn runs in its own process group (led by the master), so workers a
    killed master leaves behind are killed with it.
    """

    def __init__(
        self,
        workdir,
        *options,
        workers=2,
        env=None,
        stdout=None,
        boot_timeout=30,
        app="wsgi:app",
        ready_path="/api/telemetry/health",
        host="127.0.0.1",
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
        self.host = host
        self.process = None
        self.port = None
        self._terminated = False

    @property
    def _host_in_url(self):
        """The host as a URL or ``--bind`` writes it: an IPv6 address in brackets."""
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def url(self):
        return f"http://{self._host_in_url}:{self.port}"

    def command(self):
        """The command line that starts the server."""
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"{self._host_in_url}:{self.port or 0}",
            "--no-control-socket",
            *self.options,
            self.app,
        ]

    def start(self):
        restart = self.port is not None
        stdout = self.stdout if self.stdout is not None else open(self.stdout_path, "ab" if restart else "wb")
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                self.command(),
                cwd=REPO_ROOT,
                env=self.env,
                stdout=stdout,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        if self.stdout is None:
            stdout.close()
        self._terminated = False
        self.port = self._wait_for_port()
        self._wait_until_serving()
        return self

    def terminate(self):
        """Send SIGTERM to the master once, without waiting: a graceful shutdown starts."""
        if self.process is not None and self.process.poll() is None and not self._terminated:
            self._terminated = True
            self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout=30):
        """SIGTERM the master and wait for it; SIGKILL its process group if it will not go.

        Returns the master's exit code.
        """
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.terminate()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait(5)

    def event_lines(self, while_running=False):
        """Every line the server has written to its stdout file, parsed as JSON.

        ``while_running``: the server may be writing as the file is read, so a
        last line without its newline yet is left for the next read.
        """
        return json_lines(self.stdout_path, while_running)

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

    def try_request(self, method, path, body=None, headers=None, timeout=10):
        """``request``, with (None, None, None) when the connection fails, e.g. during shutdown."""
        try:
            return self.request(method, path, body, headers, timeout)
        except (OSError, http.client.HTTPException):
            return None, None, None

    def burst(self, path, bodies, concurrency=16):
        """POST every body from a pool of client threads; (status, reply) per body, in order."""
        with ThreadPoolExecutor(concurrency) as pool:
            answers = pool.map(lambda body: self.try_request("POST", path, body), bodies)
            return [(status, reply) for status, _, reply in answers]

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
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"gunicorn exited with {self.process.returncode}:\n{self.stderr_text()}"
                    ) from None
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gunicorn did not serve within {self.boot_timeout} s:\n{self.stderr_text()}")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()


def json_lines(path, while_written=False):
    """Every line of the file at ``path``, parsed and schema-checked (whole lines only when ``while_written``)."""
    text = Path(path).read_text("ascii")
    if while_written:
        text = text[: text.rfind("\n") + 1]
    return parse_event_lines(text)


class StdoutPipe:
    """A pipe for gunicorn's stdout that, once reading starts, is copied to a file like a log shipper does.

    Until ``start_reading`` nobody reads it: it fills, and writes to it block.
    """

    def __init__(self, path):
        self.path = Path(path)
        self._read_fd, self._write_fd = os.pipe()
        self._reader = None

    def fileno(self):
        """The write end, for ``GunicornServer(stdout=...)``."""
        return self._write_fd

    def start_reading(self):
        self._close_write_end()  # only the server's copies remain, so EOF comes when it exits
        self._reader = threading.Thread(target=self._copy, name="stdout-reader", daemon=True)
        self._reader.start()

    def lines(self):
        """Every line copied so far, parsed as JSON."""
        return json_lines(self.path)

    def close(self, timeout=30):
        """Read to the end if reading, then close the pipe."""
        self._close_write_end()
        if self._reader is not None:
            self._reader.join(timeout)
        os.close(self._read_fd)

    def _copy(self):
        with open(self.path, "wb", buffering=0) as copy:
            while chunk := os.read(self._read_fd, 65536):
                copy.write(chunk)

    def _close_write_end(self):
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
