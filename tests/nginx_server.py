"""Debian's nginx with backend/deploy/nginx.conf on a free loopback port, in front of a test's gunicorn."""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from gunicorn_server import REPO_ROOT
from processes import ServerProcess, free_port

DEPLOY_CONF = REPO_ROOT / "backend" / "deploy" / "nginx.conf"
# The only lines of the deployed file a test changes: where nginx listens, where gunicorn is.
LISTEN_LINE = "    listen 80;\n"
UPSTREAM_LINE = "    server 127.0.0.1:8000;\n"

# nginx's main context: the deployed file is included in its http block, as on a host.
_MAIN = """daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections 512;
}}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/textbook.conf;
}}
"""


def nginx_executable():
    """nginx's path; fails on CI (.ci/run installs it), skips elsewhere."""
    executable = shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx",) if os.access(path, os.X_OK)), None
    )
    if executable is None:
        message = "nginx is not installed (apt-get install -y nginx)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but the nginx tests cannot run: {message}", pytrace=False)
        pytest.skip(message)
    return executable


def site_config(listen_port, upstream_port):
    """The deployed file with its two addresses replaced, and nothing else changed."""
    text = DEPLOY_CONF.read_text()
    assert text.count(LISTEN_LINE) == 1 and text.count(UPSTREAM_LINE) == 1
    return text.replace(LISTEN_LINE, f"    listen 127.0.0.1:{listen_port};\n").replace(
        UPSTREAM_LINE, f"    server 127.0.0.1:{upstream_port};\n"
    )


class NginxServer(ServerProcess):
    """nginx in the foreground with a temporary prefix, its own pid file and error log; stopped by PID."""

    def __init__(self, workdir, upstream_port, boot_timeout=10):
        self.prefix = Path(workdir) / "nginx"
        self.upstream_port = upstream_port
        self.boot_timeout = boot_timeout
        self.process = None
        self.port = None

    @property
    def error_log(self):
        return self.prefix / "error.log"

    def start(self):
        executable = nginx_executable()
        self.prefix.mkdir(parents=True, exist_ok=True)
        (self.prefix / "nginx.conf").write_text(_MAIN.format(prefix=self.prefix))
        for _ in range(5):
            self.port = free_port()
            (self.prefix / "textbook.conf").write_text(site_config(self.port, self.upstream_port))
            self.process = subprocess.Popen(
                [executable, "-p", str(self.prefix), "-c", str(self.prefix / "nginx.conf"), "-e", str(self.error_log)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            if self._wait_until_listening():
                return self
        raise RuntimeError(f"nginx did not start on a free loopback port:\n{self.error_log.read_text()}")

    def _wait_until_listening(self):
        deadline = time.monotonic() + self.boot_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False  # the port was taken meanwhile, or the configuration is bad
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"nginx did not listen within {self.boot_timeout} s:\n{self.error_log.read_text()}")
