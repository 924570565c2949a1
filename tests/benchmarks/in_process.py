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
    """(EventLogger.log, baseline) costs, measured in alternating blocks of calls."""
    workdir = Path(workdir)
    app = create_app({"TELEMETRY_EVENTS_LOG": str(workdir / "events.jsonl")})
    # The baseline writes through the same kind of handler to the same file.
    baseline_logger = app_logger(make_handler(str(workdir / "events.jsonl")))
    event = {
        "event_id": "5c1f0f0e-5f0e-4c39-9d4e-2f9b8f6f2d7a",
        "event_type": "ai_block_used",
        "timestamp": "2026-11-23T19:30:00.123456Z",
        "payload": PAYLOAD,
    }

    def emit_baseline():
        baseline_logger.info(json.dumps(event))

    with app.app_context():
        event_logger = app.extensions["event_logger"]

        def emit_logged():
            event_logger.log("ai_block_used", PAYLOAD)

        def drain():
            event_logger.flush()

        per_block = max(1, calls // blocks)
        _timed_block(emit_logged, _BLOCK, drain)  # warm-up: writer thread started, caches filled
        _timed_block(emit_baseline, _BLOCK, drain)
        logged, baseline = [], []
        for _ in range(blocks):
            logged.append(_timed_block(emit_logged, per_block, drain))
            baseline.append(_timed_block(emit_baseline, per_block, drain))
        event_logger.shutdown()
    return _cost(logged), _cost(baseline)


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
