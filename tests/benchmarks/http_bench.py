"""HTTP benchmark: the telemetry route and an AI block under gunicorn, against baselines."""

import os
import statistics
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

from gunicorn_server import GunicornServer
from load_client import run_load, run_python

BENCH_DIR = Path(__file__).resolve().parent
WORKERS = 2
# The last events of a memory checkpoint are sent by the Python client, which can stop at a count.
_EXACT_TAIL = 2000
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
EVENT_BODY = {"event_type": "chapter_visit", "payload": {"user_id": "u-42", "chapter_id": "ch-3"}}
QUESTION_BODY = {"chapter_id": "ch-3", "section_id": "s-1", "question": "Why is the sky blue?"}

# name: (gunicorn app, extra environment); every one runs with the same gunicorn settings.
SERVERS = {
    "app": ("wsgi:app", {}),
    "app-telemetry-off": ("wsgi:app", {"FLASK_TELEMETRY_ENABLED": "false"}),
    "minimal-flask": ("minimal_flask:app", {}),
    "raw-wsgi": ("raw_wsgi:app", {}),
}


@dataclass(frozen=True)
class Variant:
    """One load: which server, which route, which body."""

    name: str
    server: str
    path: str
    body: dict


VARIANTS = (
    Variant("telemetry route", "app", "/api/telemetry/log", EVENT_BODY),
    Variant("minimal Flask", "minimal-flask", "/api/telemetry/log", EVENT_BODY),
    Variant("raw WSGI", "raw-wsgi", "/api/telemetry/log", EVENT_BODY),
    Variant("AI block, telemetry on", "app", "/api/ai/ask-question", QUESTION_BODY),
    Variant("AI block, telemetry off", "app-telemetry-off", "/api/ai/ask-question", QUESTION_BODY),
)


def start_server(workdir, app, env=None, workers=WORKERS):
    """A gunicorn with sync workers on a free loopback port; events go to a file in ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    return GunicornServer(
        workdir,
        "--pythonpath", str(BENCH_DIR),
        workers=workers,
        env=env,
        app=app,
        ready_path="/api/telemetry/log",
    ).start()


def measure(workdir, rounds, seconds, connections, progress=print):
    """Run every variant ``rounds`` times, interleaved, the order reversed every other round.

    Variants compared with each other are neighbours in VARIANTS, so each
    pair runs back to back, first A then B, next round B then A: a drift in
    the machine's load between the two runs cancels out over the rounds.

    Returns {variant name: [LoadResult per round]}.
    """
    results = {variant.name: [] for variant in VARIANTS}
    with ExitStack() as stack:
        servers = {}
        for name, (app, env) in SERVERS.items():
            server = start_server(Path(workdir) / name, app, env)
            stack.callback(server.stop)
            servers[name] = server
        for variant in VARIANTS:  # warm-up: imports done, code paths hot
            _load(servers, variant, 1, connections)
        for round_number in range(rounds):
            for variant in VARIANTS if round_number % 2 == 0 else VARIANTS[::-1]:
                result = _load(servers, variant, seconds, connections)
                results[variant.name].append(result)
                progress(
                    f"  round {round_number + 1}/{rounds} {variant.name:<24} {result.rps:8.0f} req/s"
                    f"  p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms"
                    f"  CPU {result.cpu_us:5.0f} µs/req  errors {result.errors}"
                )
    return results


def _load(servers, variant, seconds, connections):
    server = servers[variant.server]
    workers = _children(server.process.pid)
    cpu_before = _cpu_seconds(workers)
    result = run_load(server.url + variant.path, variant.body, seconds, connections)
    # CPU time is far less sensitive than req/s to other processes sharing the cores.
    cpu = (_cpu_seconds(workers) - cpu_before) / max(result.requests, 1)
    return replace(result, cpu_us=cpu * 1e6)


def _cpu_seconds(pids):
    """User plus system CPU time of these processes so far."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / _CLOCK_TICKS


def median_of(results, attribute):
    """The median of one LoadResult attribute over the rounds."""
    return statistics.median(getattr(result, attribute) for result in results)


def paired_ratios(results, attribute, numerator, denominator):
    """Per-round ratios of two variants measured in the same round."""
    return [
        getattr(top, attribute) / getattr(bottom, attribute)
        for top, bottom in zip(results[numerator], results[denominator])
    ]


def measure_memory(workdir, checkpoints, connections, progress=print):
    """Resident memory of one worker after each number of events in ``checkpoints``.

    One worker, so that it alone has handled every event; its own health
    counter gives the count. Returns [(events logged, RSS in MB)].
    """
    server = start_server(Path(workdir) / "memory", "wsgi:app", workers=1)
    url = server.url + "/api/telemetry/log"
    try:
        (worker,) = _children(server.process.pid)
        readings = []
        rate = None
        for target in checkpoints:
            logged = _events_logged(server)
            # wrk in time slices while far from the target, then an exact count.
            # The rate is measured once, and only where a second of load cannot
            # overshoot the target.
            while target - logged > _EXACT_TAIL:
                if rate is None:
                    rate = run_load(url, EVENT_BODY, 1, connections).rps
                    logged = _events_logged(server)
                    continue
                seconds = int((target - logged - _EXACT_TAIL) / rate)
                if seconds < 1:
                    break
                run_load(url, EVENT_BODY, min(seconds, 30), connections)
                logged = _events_logged(server)
            if target > logged:
                run_python(url, EVENT_BODY, 600, connections, limit=target - logged)
                logged = _events_logged(server)
            rss = _rss_mb(worker)
            readings.append((logged, rss))
            progress(f"  {logged:>7,} events: worker RSS {rss:.1f} MB")
    finally:
        server.stop()
    return readings


def _events_logged(server):
    status, _, health = server.request("GET", "/api/telemetry/health")
    if status != 200:
        raise RuntimeError(f"health answered {status}: {health}")
    return health["events_logged"]


def _children(pid):
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended while we looked
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError(f"no VmRSS for process {pid}")
