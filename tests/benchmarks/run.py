"""Telemetry's speed targets against same-run baselines: ``tests/benchmarks/run.py [--quick] [--readme]``."""

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
# Run from the checkout like the tests: the app from backend/, the gunicorn helper from tests/.
sys.path[:0] = [str(REPO_ROOT / "backend"), str(REPO_ROOT / "tests"), str(HERE)]

import crafted  # noqa: E402
import event_cost  # noqa: E402
import http_bench  # noqa: E402
import instructions  # noqa: E402
import setups  # noqa: E402
from load_client import WRK_INSTALL, wrk_available  # noqa: E402
from redis_process import RedisProcess  # noqa: E402

FULL = {
    "rounds": 10,
    "seconds": 3,
    "memory": (1_000, 101_000),
    "counts": instructions.FULL_COUNTS,
    "crafted": (5, 20),
    "event_counts": event_cost.FULL_COUNTS,
}
QUICK = {
    "rounds": 2,
    "seconds": 2,
    "memory": (1_000, 11_000),
    "counts": instructions.QUICK_COUNTS,
    "crafted": (3, 5),
    "event_counts": event_cost.QUICK_COUNTS,
}
CONNECTIONS = 4
README = REPO_ROOT / "README.md"
README_START = "<!-- benchmark results: start (written by tests/benchmarks/run.py --readme) -->"
README_END = "<!-- benchmark results: end -->"
BATCH = setups.BATCH_NAME
BATCH_OFF = f"{BATCH}, scrubbing off"


def main(argv=None):
    """Run every benchmark, print the tables, then one ``name=value`` line per result."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short, noisier run (about five minutes)")
    parser.add_argument("--readme", action="store_true", help="write the results into README.md")
    options = parser.parse_args(argv)
    settings = QUICK if options.quick else FULL
    started = time.monotonic()
    machine = _machine_line()
    print(machine)
    if wrk_available():
        client = f"wrk 1 thread, {CONNECTIONS} connections"
    else:
        client = f"Python http.client fallback, {CONNECTIONS} threads"
        print(f"wrk is not installed (install it with `{WRK_INSTALL}`); falling back to a Python")
        print("load client, which is slower and shares the cores with the servers: ratios stay")
        print("comparable, absolute rates drop.")
    load_before = os.getloadavg()[0]
    warnings = []
    with tempfile.TemporaryDirectory(prefix="telemetry-bench-") as workdir, ExitStack() as stack:
        workdir = Path(workdir)
        redis = None
        if shutil.which("redis-server"):
            redis = RedisProcess(workdir / "redis").start()
            stack.callback(redis.stop)
        else:
            warnings.append("redis-server is not installed (apt-get install -y redis-server): no Redis rows")
        pairs = http_bench.pairs(redis)
        print(
            f"\n(a) HTTP, gunicorn {http_bench.WORKERS} sync workers each, {client}, "
            f"{settings['rounds']} rounds of {len(pairs)} pairs, {settings['seconds']} s per run"
        )
        http, notes = http_bench.measure(workdir, settings["rounds"], settings["seconds"], CONNECTIONS, redis)
        warnings.extend(notes)
        print(f"  ({_minutes(started)})")
        print(f"\n(b) memory of one worker after {' and '.join(f'{n:,}' for n in settings['memory'])} events")
        memory = http_bench.measure_memory(workdir, settings["memory"], CONNECTIONS)
        print(f"  ({_minutes(started)})")
        counted = {}
        if instructions.available():
            print("\n(c) instructions per request in process (valgrind callgrind)")
            counted, _, notes = instructions.measure(workdir / "instructions", redis=redis, counts=settings["counts"])
            warnings.extend(notes)
            print(f"  ({_minutes(started)})")
        else:
            warnings.append("valgrind is not installed (apt-get install -y valgrind): no instruction counts")
        rounds, count = settings["crafted"]
        print(f"\n(d) crafted requests ÷ ordinary ones, in process, {rounds} rounds of {count}")
        crafted_results = crafted.measure(rounds, count)
        print(f"  ({_minutes(started)})")
        events = {}
        if event_cost.available():
            print("\n(e) instructions per event in process: EventLogger.log against structlog (valgrind callgrind)")
            events = event_cost.measure(workdir / "events", counts=settings["event_counts"])
            print(f"  ({_minutes(started)})")
        else:
            warnings.append(
                "valgrind or structlog is missing (pip install -r tests/benchmarks/requirements.txt): no per-event row"
            )
    load_after = os.getloadavg()[0]
    minutes = (time.monotonic() - started) / 60
    targets, costs, figures = _targets(http, memory, counted, events), _costs(http, counted), _figures(http, counted)
    targets["crafted_worst_vs_ordinary"] = _crafted_row(crafted_results)
    loads = [result for runs in http.values() for results in runs.values() for result in results]
    errors = sum(result.errors for result in loads)
    if errors:
        warnings.append(f"{errors} requests failed; their runs do not measure the routes' normal path")
    missing = sum(result.events_missing for result in loads)
    if missing:
        warnings.append(f"{missing} event lines missing from (or extra on) the servers' streams")
    print()
    _print_http_table(http)
    print()
    if counted or events:
        _print_instructions_table({**counted, **{f"per event: {way}": count for way, count in events.items()}})
        print()
    run_line = (
        f"{machine}; gunicorn {http_bench.WORKERS} sync workers (`backend/gunicorn.conf.py`, "
        f"`PROMETHEUS_MULTIPROC_DIR` set); {client}; {settings['rounds']} rounds of {settings['seconds']} s"
        f"{'' if counted else '; no valgrind'}; "
        f"load average {load_before:.2f} before, {load_after:.2f} after; "
        f"{minutes:.0f} minutes{' (--quick)' if options.quick else ''}."
    )
    block = _results_block(run_line, targets, costs, figures, memory, events, warnings)
    print(block)
    for warning in warnings:
        print(f"WARNING: {warning}")
    for name, row in {**targets, **costs, **figures}.items():
        for key, value in row.values.items():
            if isinstance(value, float):
                print(f"{name}{key}={value:.4g}")
    held = [row.holds for row in targets.values() if row.holds is not None]
    print(f"targets_met={sum(held)}/{len(held)}")
    print(f"minutes={minutes:.1f}")
    if options.readme:
        setups.write_readme_block(README, README_START, README_END, block)
        crafted.write_readme(crafted.table(crafted_results, f"{machine}; {rounds} rounds of {count} requests."))
        print(f"wrote the results into {README}")
    return 1 if warnings else 0


def _minutes(started):
    return f"{(time.monotonic() - started) / 60:.1f} minutes since the start"


def _machine_line():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    versions = [f"Python {platform.python_version()}"]
    for name, command, pattern in (
        ("gunicorn", [sys.executable, "-m", "gunicorn", "--version"], r"(\d+\.\d+\.\d+)"),
        ("wrk", ["wrk", "--version"], r"wrk (\d+\.\d+\.\d+)"),
        ("valgrind", ["valgrind", "--version"], r"valgrind-(\d+\.\d+)"),
        ("Redis", ["redis-server", "--version"], r"v=(\d+\.\d+\.\d+)"),
    ):
        version = _version(command, pattern)
        if version:
            versions.append(f"{name} {version}")
    return f"{now}; {os.cpu_count()} CPUs ({model}); {platform.platform()}; {', '.join(versions)}"


def _version(command, pattern):
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    match = re.search(pattern, done.stdout + done.stderr)
    return match.group(1) if match else None


class Row:
    """One line of a results table: its label, its figures by suffix, its target and whether it holds."""

    def __init__(self, label, values, target="—", holds=None, spread=""):
        self.label = label
        self.values = values
        self.target = target
        self.holds = holds
        self.spread = spread

    def cell(self, key="", digits=2):
        value = self.values.get(key)
        return "—" if value is None else f"{value:,.{digits}f}"


def _paired(http, attribute, numerator, denominator, denominator_attribute=None, times=1):
    if not _has(http, numerator, denominator):
        return None, ""
    ratios = [
        times * ratio
        for ratio in http_bench.paired_ratios(http, attribute, numerator, denominator, denominator_attribute)
    ]
    return statistics.median(ratios), _spread(ratios)


def _difference(http, attribute, minuend, subtrahend):
    if not _has(http, minuend, subtrahend):
        return None
    return statistics.median(http_bench.paired_differences(http, attribute, minuend, subtrahend))


def _has(http, first, second):
    return (first, second) in http or (second, first) in http


def _ratio(counted, numerator, denominator, times=1):
    if numerator not in counted or denominator not in counted:
        return None
    return times * counted[numerator] / counted[denominator]


def _targets(
    http: dict[Any, Any], memory: list[tuple[int, float]], counted: dict[str, float], events: dict[str, float]
) -> dict[str, Row]:
    """The speed targets (SPEC S16, the README's Performance): each with scrubbing on and off where it applies."""

    def row(label, target, holds, on, off, spread=""):
        return Row(label, {"": on, "_scrubbing_off": off}, target, None if on is None else holds(on), spread)

    batch, batch_spread = _paired(http, "events_per_second", BATCH, "minimal Flask", "rps")
    batch_off, _ = _paired(http, "events_per_second", BATCH_OFF, "minimal Flask", "rps")
    per_event = setups.BATCH_EVENTS
    batch_cpu, batch_cpu_spread = _paired(http, "cpu_us", "minimal Flask", BATCH, times=per_event)
    batch_cpu_off, _ = _paired(http, "cpu_us", "minimal Flask", BATCH_OFF, times=per_event)
    (first_events, first_rss), (last_events, last_rss) = memory[0], memory[-1]
    growth = (last_rss - first_rss) * 100_000 / (last_events - first_events)
    limiter = None
    if "/log" in counted and "/log, limiter off" in counted:
        limiter = 100 * (counted["/log"] - counted["/log, limiter off"]) / counted["/log"]
    event = _ratio(events, event_cost.EVENT_LOGGER, event_cost.STRUCTLOG)
    return {
        "event_instructions_vs_structlog": Row(
            "`EventLogger.log` instructions/event ÷ structlog's JSON logger (same five fields, to a file)",
            {"": event},
            "≤ 0.6",
            None if event is None else event <= 0.6,
        ),
        "batch_events_vs_flask_requests": row(
            f"events/s through `/batch` ({per_event} a request) ÷ minimal Flask req/s",
            "≥ 20",
            lambda v: v >= 20,
            batch,
            batch_off,
            batch_spread,
        ),
        "batch_events_vs_flask_requests_cpu": row(
            "the same by worker CPU: minimal Flask's per request ÷ `/batch`'s per event",
            "≥ 20",
            lambda v: v >= 20,
            batch_cpu,
            batch_cpu_off,
            batch_cpu_spread,
        ),
        "log_instructions_vs_flask": row(
            "`/log` instructions/request ÷ minimal Flask (limiter, bot check, scrubbing on)",
            "≤ 1.8",
            lambda v: v <= 1.8,
            _ratio(counted, "/log", "minimal Flask"),
            _ratio(counted, "/log, scrubbing off", "minimal Flask"),
        ),
        "limiter_memory_percent": Row(
            "rate limiter (memory storage), % of a `/log` request's instructions",
            {"": limiter},
            "≤ 5",
            None if limiter is None else limiter <= 5,
        ),
        "memory_growth_mb_per_100k": Row(
            "worker memory growth per 100,000 events, MB",
            {"": growth},
            "≤ 10",
            growth <= 10,
        ),
    }


def _crafted_row(results):
    """SPEC S13: the most expensive crafted request ÷ an ordinary one of the same size and events."""
    worst = max(results, key=lambda result: result.ratio)
    return Row(
        f"worst crafted request ÷ an ordinary one, worker CPU in process ({worst.case.name}; "
        "`tests/benchmarks/crafted.py`)",
        {"": worst.ratio},
        f"≤ {crafted.TARGET:g}",
        worst.ratio <= crafted.TARGET,
        f"{worst.low:.2f}–{worst.high:.2f}",
    )


def _costs(http, counted):
    """What each feature costs a request: instructions (in process), worker CPU and median latency (HTTP)."""
    log = counted.get("/log")

    def cost(label, on, off, timed=True, per=1):
        instructions_ = counted[on] - counted[off] if on in counted and off in counted else None
        values = {
            "_instructions": None if instructions_ is None else instructions_ / per,
            "_share_of_log": None if instructions_ is None or not log else instructions_ / per / log,
        }
        if timed:
            cpu = _difference(http, "cpu_us", on, off)
            p50 = _difference(http, "p50_ms", on, off)
            values["_cpu_us"] = None if cpu is None else cpu / per
            values["_p50_ms"] = p50
        else:
            runs = http_bench.by_variant(http)
            if on in runs and off in runs:
                values["_cpu_us"] = (_median(runs[on], "cpu_us") - _median(runs[off], "cpu_us")) / per
        return Row(label, values)

    per_event = setups.BATCH_EVENTS
    return {
        "cost_limiter_memory": cost("rate limiter, memory storage (`/log`)", "/log", "/log, limiter off"),
        "cost_limiter_redis": cost(
            "rate limiter, Redis on loopback (`/log`)", "/log, limiter on Redis", "/log, limiter off"
        ),
        "cost_scrubbing_log": cost("value scrubbing (`/log`)", "/log", "/log, scrubbing off", timed=False),
        "cost_scrubbing_batch_event": cost(
            "value scrubbing, per event of a `/batch`", BATCH, BATCH_OFF, timed=False, per=per_event
        ),
        "cost_scrubbing_ai_block": cost(
            "value scrubbing (AI block)", "AI block", "AI block, scrubbing off", timed=False
        ),
        "cost_pseudonyms": cost(
            "pseudonymous user ids, `TELEMETRY_USER_ID_KEY` set (`/log`)",
            "/log, pseudonymous user ids",
            "/log",
            timed=False,
        ),
        "cost_metrics": cost("Prometheus metrics (`/log`)", "/log", "/log, metrics off", timed=False),
    }


def _figures(http: dict[Any, Any], counted: dict[str, float]) -> dict[str, Row]:
    """Figures kept beside the targets, with no target of their own."""
    ai, ai_spread = _paired(http, "rps", "AI block", "AI block, no event")
    rps, rps_spread = _paired(http, "rps", "/log", "minimal Flask")
    p99, p99_spread = _paired(http, "p99_ms", "/log", "minimal Flask")
    cpu, cpu_spread = _paired(http, "cpu_us", "/log", "minimal Flask")
    redis, redis_spread = _paired(http, "rps", "/log, limiter on Redis", "/log, limiter off")
    return {
        # Retired targets (SPEC S16): the block records where a real one waits on a model.
        "ai_block_on_vs_without": Row(
            "AI block req/s, telemetry on ÷ without (a placeholder block)", {"": ai}, spread=ai_spread
        ),
        "ai_block_instructions_on_vs_without": Row(
            "AI block instructions/request, telemetry on ÷ without",
            {"": _ratio(counted, "AI block", "AI block, no event")},
        ),
        "log_rps_vs_flask": Row("`/log` req/s ÷ minimal Flask", {"": rps}, spread=rps_spread),
        "log_p99_vs_flask": Row("`/log` p99 latency ÷ minimal Flask", {"": p99}, spread=p99_spread),
        "log_cpu_vs_flask": Row("`/log` worker CPU/request ÷ minimal Flask", {"": cpu}, spread=cpu_spread),
        "log_redis_rps_vs_limiter_off": Row(
            "`/log` req/s, limiter on Redis ÷ limiter off", {"": redis}, spread=redis_spread
        ),
    }


def _spread(ratios):
    return f"{min(ratios):.2f}–{max(ratios):.2f}"


def _median(results, attribute):
    return statistics.median(getattr(result, attribute) for result in results)


def _results_block(
    run_line: str,
    targets: dict[str, Row],
    costs: dict[str, Row],
    figures: dict[str, Row],
    memory: list[tuple[int, float]],
    events: dict[str, float],
    warnings: list[str],
) -> str:
    """The README's results, as markdown: the run, the targets, the costs, the figures, the warnings."""
    lines = [f"Latest run: {run_line}", ""]
    lines += [
        "| target | measured | scrubbing off | per-round range | target | holds |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in targets.values():
        verdict = "—" if row.holds is None else ("yes" if row.holds else "**no**")
        lines.append(
            f"| {row.label} | {row.cell()} | {row.cell('_scrubbing_off')} | {row.spread or '—'} "
            f"| {row.target} | {verdict} |"
        )
    readings = ", ".join(f"{rss:.1f} MB after {events:,}" for events, rss in memory)
    lines += ["", f"Worker RSS: {readings} events."]
    if events:
        lines += [
            "",
            "Instructions per event, in process: " + ", ".join(f"{way} {n:,.0f}" for way, n in events.items()) + ".",
        ]
    lines += [""]
    lines += [
        "| cost per request | instructions | share of `/log` | worker CPU µs | p50 latency ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in costs.values():
        share = row.values.get("_share_of_log")
        lines.append(
            f"| {row.label} | {row.cell('_instructions', 0)} | {'—' if share is None else f'{share:.1%}'} "
            f"| {row.cell('_cpu_us', 0)} | {row.cell('_p50_ms', 3)} |"
        )
    lines += ["", "| figure (no target) | value | per-round range |", "|---|---:|---:|"]
    for row in figures.values():
        lines.append(f"| {row.label} | {row.cell()} | {row.spread or '—'} |")
    if warnings:
        lines += ["", "Warnings of this run:", ""] + [f"- {warning}" for warning in warnings]
    return "\n".join(lines)


def _print_instructions_table(counted):
    print("| in process, no gunicorn | instructions per request |")
    print("|---|---:|")
    for name, count in counted.items():
        print(f"| {name} | {count:,.0f} |")


def _print_http_table(http):
    print(
        "| HTTP variant (every round of every pair) | req/s (median) | req/s (min–max) | events/s "
        "| p50 ms | p99 ms | worker CPU µs/req |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, runs in http_bench.by_variant(http).items():
        rates = [result.rps for result in runs]
        events = f"{_median(runs, 'events_per_second'):.0f}" if runs[0].events else "—"
        print(
            f"| {name} | {statistics.median(rates):.0f} | {min(rates):.0f}–{max(rates):.0f} | {events} "
            f"| {_median(runs, 'p50_ms'):.2f} | {_median(runs, 'p99_ms'):.2f} "
            f"| {_median(runs, 'cpu_us'):.0f} |"
        )


if __name__ == "__main__":
    sys.exit(main())
