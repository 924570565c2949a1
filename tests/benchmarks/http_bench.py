"""HTTP benchmark: the telemetry routes and an AI block under gunicorn, against baselines."""

import os
import statistics
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

from gunicorn_server import REPO_ROOT, GunicornServer
from load_client import run_load, run_python

BENCH_DIR = Path(__file__).resolve().parent
WORKERS = 2
# The last events of a memory checkpoint are sent by the Python client, which can stop at a count.
_EXACT_TAIL = 2000
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
EVENT_BODY = {"event_type": "chapter_visit", "payload": {"user_id": "u-42", "chapter_id": "ch-3"}}
BATCH_EVENTS = 50
BATCH_BODY = {"events": [EVENT_BODY] * BATCH_EVENTS}
QUESTION_BODY = {"chapter_id": "ch-3", "section_id": "s-1", "question": "Why is the sky blue?"}

# name: (gunicorn app, extra environment). Every server runs as in production:
# the same gunicorn settings (backend/gunicorn.conf.py) and its own empty
# PROMETHEUS_MULTIPROC_DIR; events go to its stdout, a file.
SERVERS = {
    "app": ("wsgi:app", {}),
    "app-metrics-off": ("metrics_off:app", {}),
    "app-telemetry-off": ("wsgi:app", {"FLASK_TELEMETRY_ENABLED": "false"}),
    "minimal-flask": ("minimal_flask:app", {}),
}


@dataclass(frozen=True)
class Variant:
    """One load: which server, which route, which body, and the event lines each request must write."""

    server: str
    path: str
    body: dict
    events: int = 1


VARIANTS = {
    "telemetry route": Variant("app", "/api/telemetry/log", EVENT_BODY),
    "minimal Flask": Variant("minimal-flask", "/api/telemetry/log", EVENT_BODY, events=0),
    "telemetry route, metrics off": Variant("app-metrics-off", "/api/telemetry/log", EVENT_BODY),
    f"batch route, {BATCH_EVENTS} events": Variant("app", "/api/telemetry/batch", BATCH_BODY, BATCH_EVENTS),
    "AI block, telemetry on": Variant("app", "/api/ai/ask-question", QUESTION_BODY),
    "AI block, telemetry off": Variant("app-telemetry-off", "/api/ai/ask-question", QUESTION_BODY, events=0),
}

# Each pair runs back to back, A then B, and B then A the next round, so a
# drift in the machine's load between the two runs cancels out over the rounds.
PAIRS = (
    ("telemetry route", "minimal Flask"),
    ("telemetry route", "telemetry route, metrics off"),
    (f"batch route, {BATCH_EVENTS} events", "telemetry route"),
    ("AI block, telemetry on", "AI block, telemetry off"),
)


def start_server(workdir, app, env=None, workers=WORKERS):
    """A gunicorn as in production, sync workers on a free loopback port; stdout to a file in ``workdir``."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "prometheus").mkdir()
    return GunicornServer(
        workdir,
        "--config", str(REPO_ROOT / "backend" / "gunicorn.conf.py"),
        "--pythonpath", str(BENCH_DIR),
        workers=workers,
        env={"PROMETHEUS_MULTIPROC_DIR": str(workdir / "prometheus"), **(env or {})},
        app=app,
        ready_path="/api/telemetry/log",
    ).start()


def measure(workdir, rounds, seconds, connections, progress=print):
    """Run every pair ``rounds`` times, back to back, the order reversed every other round.

    Returns {pair: {variant name: [LoadResult per round]}}; each result's
    ``events_missing`` says how many event lines its requests should have
    written and did not (from the server's stdout file).
    """
    results = {pair: {name: [] for name in pair} for pair in PAIRS}
    with ExitStack() as stack:
        servers = {}
        for name, (app, env) in SERVERS.items():
            server = start_server(Path(workdir) / name, app, env)
            stack.callback(server.stop)
            servers[name] = server
        for name in VARIANTS:  # warm-up: imports done, code paths hot
            _load(servers, name, 1, connections)
        for round_number in range(rounds):
            for pair in PAIRS:
                for name in pair if round_number % 2 == 0 else pair[::-1]:
                    result = _load(servers, name, seconds, connections)
                    results[pair][name].append(result)
                    progress(
                        f"  round {round_number + 1}/{rounds} {name:<29} {result.rps:7.0f} req/s"
                        f"  p50 {result.p50_ms:5.2f} ms  p99 {result.p99_ms:6.2f} ms"
                        f"  CPU {result.cpu_us:5.0f} µs/req  errors {result.errors + result.events_missing}"
                    )
    return results


def _load(servers, name, seconds, connections):
    variant = VARIANTS[name]
    server = servers[variant.server]
    workers = _children(server.process.pid)
    lines_before = _line_count(server.stdout_path)
    cpu_before = _cpu_seconds(workers)
    result = run_load(server.url + variant.path, variant.body, seconds, connections)
    # CPU time is far less sensitive than req/s to other processes sharing the cores.
    cpu = (_cpu_seconds(workers) - cpu_before) / max(result.requests, 1)
    # A 202 must mean written: every counted request's events are on the stream.
    # wrk does not count the requests in flight when it stops, which may have been served.
    lines = _line_count(server.stdout_path) - lines_before
    expected = result.requests * variant.events
    missing = max(0, expected - lines) + max(0, lines - expected - connections * variant.events)
    return replace(result, cpu_us=cpu * 1e6, events=variant.events, events_missing=missing)


def _line_count(path):
    with open(path, "rb") as stream:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: stream.read(1 << 20), b""))


def _cpu_seconds(pids):
    """User plus system CPU time of these processes so far."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / _CLOCK_TICKS


def paired_ratios(results, attribute, numerator, denominator):
    """Per-round ratios of two variants of one pair, measured back to back."""
    runs = results[(numerator, denominator)] if (numerator, denominator) in results else results[
        (denominator, numerator)
    ]
    return [getattr(top, attribute) / getattr(bottom, attribute) for top, bottom in zip(runs[numerator], runs[denominator])]


def by_variant(results):
    """{variant name: every LoadResult of it, over all pairs and rounds}."""
    merged = {name: [] for name in VARIANTS}
    for runs in results.values():
        for name, loads in runs.items():
            merged[name].extend(loads)
    return merged


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
