"""In-process benchmark: EventLogger.log per call against json.dumps + logger.info."""

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from app import create_app
from app.analytics.sink import app_logger, make_handler

PAYLOAD = {
    "user_id": "u-42",
    "chapter_id": "ch-3",
    "section_id": "s-1",
    "block_type": "ask-question",
    "query": "Why is the sky blue?",
}

# Below the sink's default capacity (10,000), so no timed call meets a full backlog.
_BLOCK = 1000


@dataclass(frozen=True)
class CallCost:
    """Per-call cost of one way of emitting an event, in microseconds."""

    median_us: float
    amortised_us: float  # wall time of whole blocks, writer thread's drain included
    block_medians_us: tuple


def measure(workdir, calls, blocks):
    """Costs of EventLogger.log (telemetry on, and off) and of the baseline, in alternating blocks.

    Returns {"log": CallCost, "log_disabled": CallCost, "baseline": CallCost}.
    """
    events_log = str(Path(workdir) / "events.jsonl")
    app = create_app({"TELEMETRY_EVENTS_LOG": events_log})
    # Validates, stamps and serialises like "log", but has no sink: the caller's work alone.
    disabled = create_app({"TELEMETRY_EVENTS_LOG": events_log, "TELEMETRY_ENABLED": False})
    # The baseline writes through the same kind of handler to the same file.
    baseline_logger = app_logger(make_handler(events_log))
    event = {
        "event_id": "5c1f0f0e-5f0e-4c39-9d4e-2f9b8f6f2d7a",
        "event_type": "ai_block_used",
        "timestamp": "2026-11-23T19:30:00.123456Z",
        "payload": PAYLOAD,
    }
    runners = {
        "log": (app, lambda: app.extensions["event_logger"].log("ai_block_used", PAYLOAD)),
        "baseline": (app, lambda: baseline_logger.info(json.dumps(event))),
        "log_disabled": (disabled, lambda: disabled.extensions["event_logger"].log("ai_block_used", PAYLOAD)),
    }

    def run(name, count):
        context_app, emit = runners[name]
        with context_app.app_context():
            return _timed_block(emit, count, context_app.extensions["event_logger"].flush)

    for name in runners:  # warm-up: writer thread started, caches filled
        run(name, _BLOCK)
    per_block = max(1, calls // blocks)
    timings = {name: [] for name in runners}
    for block in range(blocks):
        for name in list(runners) if block % 2 == 0 else list(runners)[::-1]:
            timings[name].append(run(name, per_block))
    with app.app_context():
        app.extensions["event_logger"].shutdown()
    return {name: _cost(blocks) for name, blocks in timings.items()}


def _timed_block(emit, count, drain):
    """Per-call times of ``count`` calls, and the block's wall time including the drain."""
    timer = time.perf_counter
    times = []
    started = timer()
    for done in range(count):
        start = timer()
        emit()
        times.append(timer() - start)
        if done % _BLOCK == _BLOCK - 1:
            drain()
    drain()
    return times, timer() - started


def _cost(blocks):
    every = [t for times, _ in blocks for t in times]
    wall = sum(elapsed for _, elapsed in blocks)
    return CallCost(
        median_us=statistics.median(every) * 1e6,
        amortised_us=wall / len(every) * 1e6,
        block_medians_us=tuple(statistics.median(times) * 1e6 for times, _ in blocks),
    )
