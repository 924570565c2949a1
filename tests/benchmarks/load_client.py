"""Load clients for the HTTP benchmark: wrk with a Lua POST script, or a Python fallback."""

import http.client
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import setups

POST_SCRIPT = Path(__file__).with_name("post.lua")
WRK_INSTALL = "apt-get install -y wrk"
_WRK_RESULT = re.compile(r"WRK_RESULT requests=(\d+) duration_us=(\d+) errors=(\d+) p50_us=(\d+) p99_us=(\d+)")


@dataclass(frozen=True)
class LoadResult:
    """What one bounded load run measured."""

    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float
    cpu_us: float | None = None  # server workers' CPU time per request, when measured
    events: int = 1  # event lines each request writes
    events_missing: int = 0  # event lines the server's stream lacks (or has too many), when checked

    @property
    def rps(self):
        return self.requests / self.seconds

    @property
    def events_per_second(self):
        return self.rps * self.events


def wrk_available():
    """True when the wrk binary is on PATH."""
    return shutil.which("wrk") is not None


def run_load(url, body, seconds, connections):
    """POST ``body`` to ``url`` for ``seconds`` with wrk, else with the Python client."""
    if wrk_available():
        return _run_wrk(url, body, seconds, connections)
    return run_python(url, body, seconds, connections)


def _run_wrk(url, body, seconds, connections):
    env = {
        **os.environ,
        "WRK_BODY": json.dumps(body),
        "WRK_USER_AGENT": setups.HEADERS["User-Agent"],
        "WRK_USER_ID": setups.HEADERS["X-User-Id"],
    }
    command = [
        "wrk",
        "--threads",
        "1",
        "--connections",
        str(connections),
        "--duration",
        f"{seconds}s",
        "--timeout",
        "10s",
        "--script",
        str(POST_SCRIPT),
        url,
    ]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 60, check=True)
    match = _WRK_RESULT.search(completed.stdout)
    if match is None:
        raise RuntimeError(f"wrk printed no result line:\n{completed.stdout}\n{completed.stderr}")
    requests, duration_us, errors, p50_us, p99_us = map(int, match.groups())
    return LoadResult(requests, duration_us / 1e6, errors, p50_us / 1e3, p99_us / 1e3)


def run_python(url, body, seconds, connections, limit=0):
    """POST ``body`` to ``url`` from ``connections`` threads for ``seconds`` or ``limit`` requests.

    wrk cannot stop after a number of requests, so counted loads use this client.
    """
    parts = urlsplit(url)
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **setups.HEADERS}
    tickets = itertools.count()  # next() on it is atomic, so threads share the limit
    latencies = [[] for _ in range(connections)]
    errors = [0] * connections
    deadline = time.monotonic() + seconds

    def send_requests(slot):
        while time.monotonic() < deadline and not (limit and next(tickets) >= limit):
            start = time.perf_counter()
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
            try:
                connection.request("POST", parts.path, data, headers)
                response = connection.getresponse()
                response.read()
                errors[slot] += response.status >= 400
            except OSError:
                errors[slot] += 1
            finally:
                connection.close()
            latencies[slot].append(time.perf_counter() - start)

    started = time.perf_counter()
    threads = [threading.Thread(target=send_requests, args=(slot,)) for slot in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    every = sorted(itertools.chain.from_iterable(latencies))
    if len(every) < 2:
        return LoadResult(len(every), elapsed, sum(errors), float("nan"), float("nan"))
    cuts = statistics.quantiles(every, n=100)
    return LoadResult(len(every), elapsed, sum(errors), cuts[49] * 1e3, cuts[98] * 1e3)
