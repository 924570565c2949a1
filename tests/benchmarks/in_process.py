"""In-process benchmark: EventLogger.log per call against json.dumps + logger.info."""

import json
import logging
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from app import create_app

PAYLOAD = {
    "user_id": "u-42",
    "chapter_id": "ch-3",
    "section_id": "s-1",
    "block_type": "ask-question",
    "query": "Why is the sky blue?",
}


@dataclass(frozen=True)
class CallCost:
    """Per-call cost of one way of emitting an event, in microseconds."""

    median_us: float
    block_medians_us: tuple


class LineHandler(logging.Handler):
    """The baseline's handler: one write(2) per record to a file opened with O_APPEND, as the sink's."""

    def __init__(self, path):
        super().__init__()
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)

    def emit(self, record):
        os.write(self.fd, (record.getMessage() + "\n").encode("ascii"))

    def close(self):
        os.close(self.fd)
        super().close()


def measure(workdir, calls, blocks):
    """Costs of EventLogger.log (telemetry on, and off) and of the baseline, in alternating blocks.

    Every call's line goes to a regular file in ``workdir``; the sink writes
    it in the caller's thread, so a call's time is its whole cost.
    Returns {"log": CallCost, "log_disabled": CallCost, "baseline": CallCost}.
    """
    app = create_app({"TELEMETRY_EVENTS_LOG": str(Path(workdir) / "events.jsonl")})
    # Validates, redacts, stamps and encodes like "log", then returns: the caller's work without the write.
    disabled = create_app({"TELEMETRY_ENABLED": False})
    handler = LineHandler(Path(workdir) / "baseline.jsonl")
    baseline_logger = logging.getLogger("telemetry-benchmark.baseline")
    baseline_logger.propagate = False
    baseline_logger.setLevel(logging.INFO)
    baseline_logger.addHandler(handler)
    event = {
        "event_id": "5c1f0f0e-5f0e-4c39-9d4e-2f9b8f6f2d7a",
        "event_type": "ai_block_used",
        "timestamp": "2026-11-23T19:30:00.123456Z",
        "payload": PAYLOAD,
    }
    runners = {
        "log": (app, lambda: app.extensions["event_logger"].log("ai_block_used", PAYLOAD)),
        "log_disabled": (disabled, lambda: disabled.extensions["event_logger"].log("ai_block_used", PAYLOAD)),
        "baseline": (app, lambda: baseline_logger.info(json.dumps(event))),
    }

    def run(name, count):
        context_app, emit = runners[name]
        with context_app.app_context():
            return _timed_block(emit, count)

    for name in runners:  # warm-up: caches filled, files open
        run(name, 1000)
    per_block = max(1, calls // blocks)
    timings = {name: [] for name in runners}
    for block in range(blocks):
        for name in list(runners) if block % 2 == 0 else list(runners)[::-1]:
            timings[name].append(run(name, per_block))
    baseline_logger.removeHandler(handler)
    handler.close()
    with app.app_context():
        app.extensions["event_logger"].shutdown()
    return {
        name: CallCost(
            median_us=statistics.median(t for times in blocks for t in times) * 1e6,
            block_medians_us=tuple(statistics.median(times) * 1e6 for times in blocks),
        )
        for name, blocks in timings.items()
    }


def _timed_block(emit, count):
    timer = time.perf_counter
    times = []
    for _ in range(count):
        start = timer()
        emit()
        times.append(timer() - start)
    return times
