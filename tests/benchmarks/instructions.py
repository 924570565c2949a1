"""Instructions per request, counted by valgrind's callgrind: the same count on every run, busy or not.

Timings on a shared two-core VM move by ±15 % between rounds, more than
some of the costs the targets bound (the rate limiter's 5 %). Callgrind
counts the instructions a process executes instead. The variants run in
process (the app's ``wsgi_app``, no gunicorn, no sockets), those of one module
in one child under callgrind, one after the other: each is built, warmed up,
then its requests are counted between two dumps (``callgrind_control -d``),
so start-up and first-request costs stay out of the count. A limiter on
Redis counts this process's side only (redis-py and ``limits``); the server
runs outside valgrind. Run alone with ``python tests/benchmarks/instructions.py``.
"""

import gc
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
sys.path[:0] = [str(REPO_ROOT / "backend"), str(HERE)]

import setups  # noqa: E402

# Requests warmed up, then counted, per variant; a batch carries 50 events, so fewer of them.
FULL_COUNTS = {"request": (30, 300), "batch": (4, 30)}
QUICK_COUNTS = {"request": (20, 60), "batch": (3, 8)}
_WARM_PASSES = 2
_EVENTS_LOG = "FLASK_TELEMETRY_EVENTS_LOG"
_TOTALS = re.compile(r"^totals:\s*(\d+)", re.MULTILINE)


def available():
    return shutil.which("valgrind") is not None and shutil.which("callgrind_control") is not None


def measure(workdir, names=None, redis=None, counts=FULL_COUNTS, progress=print):
    """Instructions per request of every variant in ``names`` (default: all), as production runs them.

    Returns ({variant: instructions per request}, [health reply per variant], [warnings]).
    Metrics run in multiprocess mode, as under gunicorn.
    """
    workdir = Path(workdir)
    names = [name for name in (names or setups.VARIANTS) if redis or not _app(name).uses_redis()]
    # One child per module: the production app's settings are read per app built; the
    # other modules patch the app package as they are imported.
    groups = {}
    for name in names:
        module = _app(name).module
        groups.setdefault(module if module == "wsgi" else name, []).append(name)
    counted, healths, warnings = {}, {}, []
    for key, group in groups.items():
        found, health, notes = _run_child(workdir / _slug(key), group, redis, counts, progress)
        counted.update(found)
        healths.update(health)
        warnings.extend(notes)
    return {name: counted[name] for name in names}, healths, warnings


def _app(name):
    return setups.APPS[setups.VARIANTS[name].app]


def _slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _run_child(workdir, names, redis, counts, progress):
    plan = []
    for name in names:
        variant = setups.VARIANTS[name]
        warm, count = counts["batch" if variant.route is setups.BATCH else "request"]
        plan.append(
            {
                "name": name,
                "module": _app(name).module,
                "env": _app(name).environment(redis.url if redis else None),
                "path": variant.route.path,
                "body": variant.route.body,
                "status": variant.route.status,
                "warm": warm,
                "count": count,
            }
        )
    counted, healths, warnings = {}, {}, []
    dumps = 0
    # Each variant's settings travel in the plan: the child sets them before it builds that app.
    with callgrind_child(workdir, __file__, plan) as (child, output):
        for step in plan:
            name = step["name"]
            uses_redis = _app(name).uses_redis()
            _expect(child, "ready", workdir)  # built and warmed up
            dumps = _dump(child, dumps)
            redis_before = redis.commands_processed() if uses_redis else 0
            child.stdin.write("go\n")
            child.stdin.flush()
            _expect(child, "ready", workdir)  # the counted requests are done
            dumps = _dump(child, dumps)
            instructions = _totals(output, dumps)
            counted[name] = instructions / step["count"]
            if uses_redis:
                # Two INFO commands of ours are counted too.
                used = redis.commands_processed() - redis_before - 2
                if used < step["count"]:
                    warnings.append(
                        f"{name}: Redis executed {used} commands for {step['count']} requests: "
                        "the limiter did not count there"
                    )
            child.stdin.write("go\n")
            child.stdin.flush()
            reply = json.loads(_expect(child, "health", workdir))
            healths[name] = reply["health"]
            if reply["threads"]:
                # limits' memory storage restarts its expiry timer every 10 ms of wall time while hits
                # arrive; under valgrind a request takes longer than that, so the count holds about
                # one restart a request where a worker at full speed has one per several requests.
                warnings.append(
                    f"{name}: {reply['threads']} threads started during its {step['count']} counted requests "
                    "(a timer that follows the clock: its share is overstated here)"
                )
            expected = (_WARM_PASSES * step["warm"] + step["count"]) * setups.VARIANTS[name].events
            if healths[name] and healths[name]["events_logged"] != expected:
                warnings.append(f"{name}: {healths[name]['events_logged']} events logged, not {expected}")
            progress(f"  {name:<36} {counted[name]:>12,.0f} instructions per request")
    return counted, healths, warnings


@contextmanager
def callgrind_child(workdir, script, plan, app_environment=None):
    """``script --child <plan as JSON>`` under callgrind, in a new ``workdir``: yields the child and its output file.

    The child gets this process's environment with ``app_environment`` (an app's ``FLASK_*`` variables) in
    place of its ``FLASK_*`` ones, an events log and a metrics directory (multiprocess mode) of its own in
    ``workdir``. The block talks to it through ``_expect``, ``_dump`` and ``_totals``; when the block ends,
    the child must say ``done`` and exit 0. It is killed if the block fails.
    """
    workdir.mkdir(parents=True)
    environment = {
        **{key: value for key, value in os.environ.items() if not key.startswith("FLASK_")},
        **(app_environment or {}),
        _EVENTS_LOG: str(workdir / "events.jsonl"),
        "PROMETHEUS_MULTIPROC_DIR": str(workdir / "prometheus"),
        # The same dict layouts and set orders on every run.
        "PYTHONHASHSEED": "0",
    }
    (workdir / "prometheus").mkdir()
    output = workdir / "callgrind.out"
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={output}",
        # The venv's own interpreter path, so that it finds the venv's packages.
        sys.executable,
        script,
        "--child",
        json.dumps(plan),
    ]
    child = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=environment,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=open(workdir / "valgrind.log", "wb"),
        text=True,
    )
    try:
        yield child, output
        _expect(child, "done", workdir)
        child.stdin.close()
        if child.wait(120) != 0:
            raise RuntimeError(f"the callgrind child failed; see {workdir / 'valgrind.log'}")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def _expect(child, word, workdir):
    line = child.stdout.readline()
    if not line.startswith(word):
        child.kill()
        log = (workdir / "valgrind.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"the callgrind child said {line!r}, not {word!r}:\n{log}")
    return line[len(word) :].strip()


def _dump(child, dumps):
    command = ["callgrind_control", "--dump", str(child.pid)]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    return dumps + 1


def _totals(output, dump):
    text = Path(f"{output}.{dump}").read_text()
    return int(_TOTALS.search(text).group(1))


def _serve(plan):
    """The child: build every variant's app and warm them all up, then serve each one's counted requests.

    All are warmed before any is counted: the interpreter's specialisation of
    shared code settles over the first few thousand calls, and would
    otherwise make whichever variant runs later look cheaper.
    """
    sys.path[:0] = [str(REPO_ROOT)]
    senders = []
    for step in plan:
        for key in [key for key in os.environ if key.startswith("FLASK_") and key != _EVENTS_LOG]:
            del os.environ[key]
        os.environ.update(step["env"])
        if step["module"] == "wsgi":
            from app import create_app

            app = create_app()  # what wsgi.py does, once per setting
        else:
            app = __import__(step["module"]).app
        senders.append((app, _sender(app, step["path"], step["body"], step["status"])))
    for _ in range(_WARM_PASSES):
        for step, (_, send) in zip(plan, senders, strict=True):
            for _ in range(step["warm"]):
                send()
    # What start-up and the warm-up left on the heap is frozen, out of the collector's way.
    gc.collect()
    gc.freeze()
    started = _count_thread_starts()
    for step, (app, send) in zip(plan, senders, strict=True):
        _handshake("ready")
        before = started[0]
        for _ in range(step["count"]):
            send()
        threads = started[0] - before
        _handshake("ready")
        health = None
        if "/api/telemetry/health" in {rule.rule for rule in app.url_map.iter_rules()}:
            health = _call(app, "GET", "/api/telemetry/health", b"")[1]
        print("health", json.dumps({"threads": threads, "health": json.loads(health) if health else None}), flush=True)
    print("done", flush=True)


def _count_thread_starts():
    """A counter of threads started from now on: timers whose restarts follow the clock, not the requests."""
    started = [0]
    start = threading.Thread.start

    def counting_start(thread):
        started[0] += 1
        return start(thread)

    threading.Thread.start = counting_start
    return started


def _sender(app, path, body, status):
    data = json.dumps(body).encode()

    def send():
        answer, reply = _call(app, "POST", path, data)
        if answer != status:
            raise SystemExit(f"POST {path} answered {answer}, not {status}: {reply[:500]!r}")

    return send


def _call(app, method, path, data):
    environ = setups.wsgi_environ(method, path, data, setups.HEADERS)
    statuses = []
    answer = app.wsgi_app(environ, lambda status, headers, exc_info=None: statuses.append(int(status[:3])))
    reply = b"".join(answer)
    getattr(answer, "close", lambda: None)()
    return statuses[0], reply


def _handshake(word):
    print(word, flush=True)
    sys.stdin.readline()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _serve(json.loads(sys.argv[2]))
    else:
        from redis_process import RedisProcess

        with tempfile.TemporaryDirectory(prefix="telemetry-instructions-") as workdir:
            redis = RedisProcess(Path(workdir) / "redis").start() if shutil.which("redis-server") else None
            try:
                counted, _, warnings = measure(workdir, redis=redis)
            finally:
                if redis:
                    redis.stop()
            for warning in warnings:
                print("WARNING:", warning)
