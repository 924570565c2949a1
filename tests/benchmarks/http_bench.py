"""HTTP benchmark: the telemetry routes and an AI block under gunicorn, against baselines in the same run."""

import os
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import setups
from gunicorn_server import REPO_ROOT, GunicornServer
from load_client import run_load, run_python

BENCH_DIR = Path(__file__).resolve().parent
WORKERS = 2
# The last events of a memory checkpoint are sent by the Python client, which can stop at a count.
_EXACT_TAIL = 2000
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# Each pair runs back to back, A then B, and B then A the next round, so a
# drift in the machine's load between the two runs cancels out over the rounds.
PAIRS = (
    ("AI block", "AI block, no event"),
    ("AI block, scrubbing off", "AI block, no event"),
    (setups.BATCH_NAME, "minimal Flask"),
    (f"{setups.BATCH_NAME}, scrubbing off", "minimal Flask"),
    ("/log", "minimal Flask"),
    ("/log", "/log, limiter off"),
    ("/log, limiter on Redis", "/log, limiter off"),
)


def pairs(redis):
    """The pairs this run measures: those on Redis only with a redis-server."""
    return tuple(pair for pair in PAIRS if redis or not any(_app(name).uses_redis() for name in pair))


def _app(name):
    return setups.APPS[setups.VARIANTS[name].app]


def start_server(workdir, app, env=None, workers=WORKERS):
    """A gunicorn as in production, sync workers on a free loopback port; stdout to a file in ``workdir``."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "prometheus").mkdir()
    return GunicornServer(
        workdir,
        "--config",
        str(REPO_ROOT / "backend" / "gunicorn.conf.py"),
        "--pythonpath",
        str(BENCH_DIR),
        workers=workers,
        env={"PROMETHEUS_MULTIPROC_DIR": str(workdir / "prometheus"), **(env or {})},
        app=app,
        ready_path=setups.LOG.path,
    ).start()


def measure(workdir, rounds, seconds, connections, redis=None, progress=print):
    """Run every pair ``rounds`` times, back to back, the order reversed every other round.

    Returns ({pair: {variant name: [LoadResult per round]}}, [warnings]); each
    result's ``events_missing`` says how many event lines its requests should
    have written and did not (from the server's stdout file). Before the
    rounds, each server is checked for the settings it was started with
    (the limiter's storage, the bot check, scrubbing), so that a run whose
    settings were not honoured says so.
    """
    measured = pairs(redis)
    results = {pair: {name: [] for name in pair} for pair in measured}
    names = list(dict.fromkeys(name for pair in measured for name in pair))
    warnings = []
    with ExitStack() as stack:
        servers = {}
        for app_name in dict.fromkeys(setups.VARIANTS[name].app for name in names):
            app = setups.APPS[app_name]
            env = app.environment(redis.url if redis else None)
            server = start_server(Path(workdir) / _slug(app_name), f"{app.module}:app", env)
            stack.callback(server.stop)
            servers[app_name] = server
            warnings.extend(f"{app_name}: {problem}" for problem in check_settings(server, app))
        for name in names:  # warm-up: imports done, code paths hot
            _load(servers, name, 1, connections)
        for round_number in range(rounds):
            for pair in measured:
                for name in pair if round_number % 2 == 0 else pair[::-1]:
                    result = _load(servers, name, seconds, connections)
                    results[pair][name].append(result)
                    progress(
                        f"  round {round_number + 1}/{rounds} {name:<29} {result.rps:7.0f} req/s"
                        f"  p50 {result.p50_ms:5.2f} ms  p99 {result.p99_ms:6.2f} ms"
                        f"  CPU {result.cpu_us:5.0f} µs/req  errors {result.errors + result.events_missing}"
                    )
        if redis and "app, limiter on Redis" in servers:
            before = redis.commands_processed()
            sent = _load(servers, "/log, limiter on Redis", 1, connections).requests
            if redis.commands_processed() - before < sent:
                warnings.append("app, limiter on Redis: its requests did not reach Redis")
    return results, warnings


def check_settings(server, app):
    """What a server that should run ``app``'s settings does otherwise, in words (empty: all honoured)."""
    if app.module == "minimal_flask":
        return []
    settings = app.settings
    problems = []
    _, _, health = server.request("GET", "/api/telemetry/health")
    limiter = health.get("rate_limiter")
    if limiter is None:
        problems.append("health names no rate_limiter (the app has none)")
    elif settings.get("TELEMETRY_RATE_LIMIT") != "off" and limiter != "ok":
        problems.append(f"health says rate_limiter {limiter!r}, not 'ok'")
    probe = {"event_type": "chapter_visit", "payload": {"chapter_id": "ch-3", "note": "reader@example.org"}}
    status, _, reply = server.request("POST", setups.LOG.path, probe, {"User-Agent": setups.BOT_USER_AGENT})
    if settings.get("TELEMETRY_IGNORE_BOTS") and (status, (reply or {}).get("status")) != (200, "ignored"):
        problems.append(f"a Googlebot request was answered {status}, not 200 ignored (no bot check)")
    server.request("POST", setups.LOG.path, probe, setups.HEADERS)
    last = _last_line(server.stdout_path)
    scrubbed = "reader@example.org" not in last
    if scrubbed != bool(settings.get("TELEMETRY_SCRUB_VALUES")):
        problems.append(f"an e-mail address in a payload was {'' if scrubbed else 'not '}scrubbed")
    return problems


def _last_line(path):
    lines = Path(path).read_bytes().splitlines()
    return lines[-1].decode() if lines else ""


def _slug(text):
    return "".join(character if character.isalnum() else "-" for character in text.lower())


def _load(servers, name, seconds, connections):
    variant = setups.VARIANTS[name]
    server = servers[variant.app]
    workers = _children(server.process.pid)
    lines_before = _line_count(server.stdout_path)
    cpu_before = _cpu_seconds(workers)
    result = run_load(server.url + variant.route.path, variant.route.body, seconds, connections)
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


def paired_ratios(results, attribute, numerator, denominator, denominator_attribute=None):
    """Per-round ratios of two variants of one pair, measured back to back."""
    runs = _pair(results, numerator, denominator)
    return [
        getattr(top, attribute) / getattr(bottom, denominator_attribute or attribute)
        for top, bottom in zip(runs[numerator], runs[denominator], strict=True)
    ]


def paired_differences(results, attribute, minuend, subtrahend):
    """Per-round differences of two variants of one pair, measured back to back."""
    runs = _pair(results, minuend, subtrahend)
    return [
        getattr(top, attribute) - getattr(bottom, attribute)
        for top, bottom in zip(runs[minuend], runs[subtrahend], strict=True)
    ]


def _pair(results, first, second):
    return results[(first, second)] if (first, second) in results else results[(second, first)]


def by_variant(results):
    """{variant name: every LoadResult of it, over all pairs and rounds}."""
    merged = {}
    for runs in results.values():
        for name, loads in runs.items():
            merged.setdefault(name, []).extend(loads)
    return merged


def measure_memory(workdir, checkpoints, connections, progress=print):
    """Resident memory of one worker after each number of events in ``checkpoints``.

    One worker of the production app, so that it alone has handled every
    event; its own health counter gives the count. Returns [(events logged, RSS in MB)].
    """
    app = setups.APPS["app"]
    server = start_server(Path(workdir) / "memory", f"{app.module}:app", app.environment(), workers=1)
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
                    rate = run_load(url, setups.EVENT_BODY, 1, connections).rps
                    logged = _events_logged(server)
                    continue
                seconds = int((target - logged - _EXACT_TAIL) / rate)
                if seconds < 1:
                    break
                run_load(url, setups.EVENT_BODY, min(seconds, 30), connections)
                logged = _events_logged(server)
            if target > logged:
                run_python(url, setups.EVENT_BODY, 600, connections, limit=target - logged)
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
