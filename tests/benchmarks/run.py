"""Telemetry benchmarks against same-run baselines; run ``python tests/benchmarks/run.py [--quick]``."""

import argparse
import os
import platform
import statistics
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
# Run from the checkout like the tests: the app from backend/, the gunicorn helper from tests/.
sys.path[:0] = [str(REPO_ROOT / "backend"), str(REPO_ROOT / "tests"), str(HERE)]

import http_bench  # noqa: E402
import in_process  # noqa: E402
import instructions  # noqa: E402
from load_client import WRK_INSTALL, wrk_available  # noqa: E402

FULL = {"calls": 200_000, "blocks": 10, "rounds": 10, "seconds": 3, "memory": (1_000, 100_000)}
QUICK = {"calls": 20_000, "blocks": 4, "rounds": 2, "seconds": 2, "memory": (1_000, 10_000)}
CONNECTIONS = 4


def main(argv=None):
    """Run every benchmark, print the tables, then one ``name=value`` line per result."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short, noisier run (under a minute)")
    settings = QUICK if parser.parse_args(argv).quick else FULL
    print(_machine_line())
    if wrk_available():
        client = f"wrk 1 thread, {CONNECTIONS} connections"
    else:
        client = f"Python http.client fallback, {CONNECTIONS} threads"
        print(f"wrk is not installed (install it with `{WRK_INSTALL}`); falling back to a Python")
        print("load client, which is slower and shares the cores with the servers: ratios stay")
        print("comparable, absolute rates drop.")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="telemetry-bench-") as workdir:
        workdir = Path(workdir)
        print(f"\n(a) in-process, {settings['calls']:,} calls each, {settings['blocks']} alternating blocks")
        (workdir / "in-process").mkdir()
        in_process_costs = in_process.measure(workdir / "in-process", settings["calls"], settings["blocks"])
        print(f"\n(b) HTTP, gunicorn {http_bench.WORKERS} sync workers each, {client}, "
              f"{settings['rounds']} rounds of {len(http_bench.PAIRS)} pairs, {settings['seconds']} s per run")
        http = http_bench.measure(workdir, settings["rounds"], settings["seconds"], CONNECTIONS)
        print(f"\n(c) memory of one worker after {' and '.join(f'{n:,}' for n in settings['memory'])} events")
        memory = http_bench.measure_memory(workdir, settings["memory"], CONNECTIONS)
        counted = {}
        if instructions.available():
            print(f"\n(d) instructions per request in process (valgrind callgrind), {instructions.COUNTS} requests")
            counted = instructions.measure(workdir)
        else:
            print("\n(d) skipped: valgrind is not installed (apt-get install -y valgrind)")
    load_after = os.getloadavg()[0]
    results = _results(in_process_costs, http, memory, counted)
    print()
    _print_http_table(http)
    print()
    _print_in_process_table(in_process_costs)
    print()
    if counted:
        _print_instructions_table(counted)
        print()
    _print_targets(results, memory)
    print(f"\nload average (1 min): {load_before:.2f} before, {load_after:.2f} after; client: {client}")
    loads = [result for runs in http.values() for results in runs.values() for result in results]
    errors = sum(result.errors for result in loads)
    if errors:
        print(f"WARNING: {errors} requests failed; their runs do not measure the routes' normal path")
    missing = sum(result.events_missing for result in loads)
    if missing:
        print(f"WARNING: {missing} event lines missing from (or extra on) the servers' streams")
    for name, (value, _, _) in results.items():
        print(f"{name}={value:.2f}" if isinstance(value, float) else f"{name}={value}")
    held = sum(holds for _, _, holds in results.values() if holds is not None)
    print(f"targets_met={held}/{sum(holds is not None for _, _, holds in results.values())}")
    return 1 if errors or missing else 0


def _machine_line():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    python = platform.python_version()
    return f"{now}; {os.cpu_count()} CPUs ({model}); Python {python}; {platform.platform()}"


def _results(in_process_costs, http, memory, counted):
    """name: (value, per-round range, whether its target holds or None where there is none)."""
    logged, baseline = in_process_costs["log"], in_process_costs["baseline"]

    def paired(attribute, numerator, denominator, holds=None):
        ratios = http_bench.paired_ratios(http, attribute, numerator, denominator)
        value = statistics.median(ratios)
        return value, _spread(ratios), None if holds is None else holds(value)

    log_ratio = logged.median_us / baseline.median_us
    block_ratios = [a / b for a, b in zip(logged.block_medians_us, baseline.block_medians_us)]
    growth = memory[-1][1] - memory[0][1]
    batch = f"batch route, {http_bench.BATCH_EVENTS} events"
    return {
        "ratio_ai_telemetry_on_vs_off": paired(
            "rps", "AI block, telemetry on", "AI block, telemetry off", lambda v: v >= 0.95
        ),
        "ratio_telemetry_p99_vs_flask": paired(
            "p99_ms", "telemetry route", "minimal Flask", lambda v: v <= 1.3
        ),
        "ratio_telemetry_vs_flask": paired("rps", "telemetry route", "minimal Flask", lambda v: v >= 0.80),
        "ratio_batch_events_vs_log": paired(
            "events_per_second", batch, "telemetry route", lambda v: v >= 10
        ),
        "ratio_log_vs_baseline": (log_ratio, _spread(block_ratios), log_ratio <= 1.0),
        "memory_growth_mb": (growth, "", growth <= 10),
        "ratio_metrics_cpu_on_vs_off": paired(
            "cpu_us", "telemetry route", "telemetry route, metrics off", lambda v: v <= 1.03
        ),
        "ratio_telemetry_cpu_vs_flask": paired("cpu_us", "telemetry route", "minimal Flask"),
        "ratio_ai_cpu_on_vs_off": paired("cpu_us", "AI block, telemetry on", "AI block, telemetry off"),
        "ratio_log_disabled_vs_baseline": (in_process_costs["log_disabled"].median_us / baseline.median_us, "", None),
        **_instruction_results(counted),
    }


def _instruction_results(counted):
    """The same comparisons in instructions, which noise cannot move (empty without valgrind)."""
    if not counted:
        return {}

    def ratio(numerator, denominator, holds=None):
        value = counted[numerator] / counted[denominator]
        return value, "", None if holds is None else holds(value)

    return {
        "ratio_metrics_instructions_on_vs_off": ratio(
            "telemetry route", "telemetry route, metrics off", lambda v: v <= 1.03
        ),
        "ratio_ai_instructions_on_vs_off": ratio("AI block, telemetry on", "AI block, telemetry off"),
        "ratio_telemetry_instructions_vs_flask": ratio("telemetry route", "minimal Flask"),
    }


def _print_instructions_table(counted):
    print("| in process, no gunicorn | instructions per request |")
    print("|---|---:|")
    for name, count in counted.items():
        print(f"| {name} | {count:,.0f} |")


def _spread(ratios):
    return f"{min(ratios):.2f}–{max(ratios):.2f}"


def _print_http_table(http):
    print("| HTTP variant (every round of every pair) | req/s (median) | req/s (min–max) | events/s "
          "| p50 ms | p99 ms | worker CPU µs/req |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, runs in http_bench.by_variant(http).items():
        rates = [result.rps for result in runs]
        events = f"{_median(runs, 'events_per_second'):.0f}" if runs[0].events else "—"
        print(
            f"| {name} | {statistics.median(rates):.0f} | {min(rates):.0f}–{max(rates):.0f} | {events} "
            f"| {_median(runs, 'p50_ms'):.2f} | {_median(runs, 'p99_ms'):.2f} | {_median(runs, 'cpu_us'):.0f} |"
        )


def _median(results, attribute):
    return statistics.median(getattr(result, attribute) for result in results)


_IN_PROCESS_LABELS = {
    "log": "EventLogger.log (line written by the caller)",
    "log_disabled": "EventLogger.log, telemetry disabled (validate, stamp, encode; no write)",
    "baseline": "json.dumps + logger.info, one write per line (baseline)",
}


def _print_in_process_table(costs):
    print("| in-process, per call | median µs | per-block medians µs |")
    print("|---|---:|---:|")
    for name, label in _IN_PROCESS_LABELS.items():
        blocks = costs[name].block_medians_us
        print(f"| {label} | {costs[name].median_us:.1f} | {min(blocks):.1f}–{max(blocks):.1f} |")


_LABELS = {
    "ratio_ai_telemetry_on_vs_off": ("AI block req/s, telemetry on ÷ off", "≥ 0.95"),
    "ratio_telemetry_p99_vs_flask": ("telemetry route p99 ÷ minimal Flask p99", "≤ 1.3"),
    "ratio_telemetry_vs_flask": ("telemetry route req/s ÷ minimal Flask", "≥ 0.80"),
    "ratio_batch_events_vs_log": (
        f"events/s, batch route ({http_bench.BATCH_EVENTS} per request) ÷ /log", "≥ 10"
    ),
    "ratio_log_vs_baseline": ("EventLogger.log ÷ baseline (median per call)", "≤ 1.0"),
    "memory_growth_mb": ("worker memory growth, MB", "≤ 10"),
    "ratio_metrics_cpu_on_vs_off": ("telemetry route worker CPU/req, metrics on ÷ off", "≤ 1.03"),
    "ratio_telemetry_cpu_vs_flask": ("telemetry route worker CPU/req ÷ minimal Flask", "—"),
    "ratio_ai_cpu_on_vs_off": ("AI block worker CPU/req, telemetry on ÷ off", "—"),
    "ratio_log_disabled_vs_baseline": ("EventLogger.log, telemetry disabled ÷ baseline (median)", "—"),
    "ratio_metrics_instructions_on_vs_off": ("telemetry route instructions/req, metrics on ÷ off", "≤ 1.03"),
    "ratio_ai_instructions_on_vs_off": ("AI block instructions/req, telemetry on ÷ off", "—"),
    "ratio_telemetry_instructions_vs_flask": ("telemetry route instructions/req ÷ minimal Flask", "—"),
}


def _print_targets(results, memory):
    print("| measure | value | per-round range | target | holds |")
    print("|---|---:|---:|---:|---|")
    for name, (value, spread, holds) in results.items():
        label, target = _LABELS[name]
        verdict = "—" if holds is None else ("yes" if holds else "**no**")
        print(f"| {label} | {value:.2f} | {spread or '—'} | {target} | {verdict} |")
    readings = ", ".join(f"{rss:.1f} MB after {events:,} events" for events, rss in memory)
    print(f"\nworker RSS: {readings}")


if __name__ == "__main__":
    sys.exit(main())
