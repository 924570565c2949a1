"""An event's own cost in process: ``EventLogger.log`` against structlog's JSON logger, in callgrind instructions.

What a Flask developer would write instead of the EventLogger is a
structured log line: structlog 26 with ``add_log_level``, an ISO UTC
``TimeStamper``, ``JSONRenderer`` and ``WriteLoggerFactory`` to a file
(``tests/benchmarks/requirements.txt``). Each way writes the same five
``ai_block_used`` fields as one line to a file of its own; the EventLogger
runs as production does (validation, redaction and scrubbing pre-checks,
Prometheus counters in multiprocess mode, health counts, the write). Beside
them: the floor (a random id, a timestamp, ``orjson.dumps``, one
``os.write``) and one event of a 50-event ``accept_all`` (``/batch``'s
path). Every way runs in one child under callgrind, warmed up, then counted
between two dumps, as ``instructions.py`` counts requests. Run alone with
``python tests/benchmarks/event_cost.py``.
"""

import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
sys.path[:0] = [str(REPO_ROOT / "backend"), str(HERE)]

import instructions  # noqa: E402
import setups  # noqa: E402

PAYLOAD = {
    "user_id": "u-42",
    "chapter_id": "ch-3",
    "section_id": "s-1",
    "block_type": "ask-question",
    "query": "Why is the sky blue?",
}
BATCH_EVENTS = setups.BATCH_EVENTS
EVENT_LOGGER = "EventLogger.log"
STRUCTLOG = "structlog JSON logger"
FLOOR = "id, timestamp, orjson, os.write"
BATCH = f"one event of a {BATCH_EVENTS}-event accept_all"
WAYS = (EVENT_LOGGER, STRUCTLOG, FLOOR, BATCH)
FULL_COUNTS = (500, 2_000)
QUICK_COUNTS = (300, 500)


def available() -> bool:
    """True when valgrind and structlog are both there."""
    try:
        import structlog  # noqa: F401
    except ImportError:
        return False
    return instructions.available()


def measure(
    workdir: str | Path, counts: tuple[int, int] = FULL_COUNTS, progress: Callable[[str], object] = print
) -> dict[str, float]:
    """Instructions per event of each way in ``WAYS``: ``{way: instructions}``."""
    workdir = Path(workdir)
    plan = {"workdir": str(workdir), "warm": counts[0], "count": counts[1]}
    counted, dumps = {}, 0
    # The production app, built once in the child from these settings.
    with instructions.callgrind_child(workdir, __file__, plan, setups.APPS["app"].environment()) as (child, output):
        for way in WAYS:
            instructions._expect(child, "ready", workdir)
            dumps = instructions._dump(child, dumps)
            child.stdin.write("go\n")
            child.stdin.flush()
            instructions._expect(child, "ready", workdir)
            dumps = instructions._dump(child, dumps)
            counted[way] = instructions._totals(output, dumps) / _events(way, counts[1])
            child.stdin.write("go\n")
            child.stdin.flush()
            progress(f"  {way:<36} {counted[way]:>12,.0f} instructions per event")
    return counted


def _calls(way: str, count: int) -> int:
    # A batch call writes BATCH_EVENTS events: a tenth as many calls still count five times the events.
    return count // 10 if way == BATCH else count


def _events(way: str, count: int) -> int:
    return _calls(way, count) * (BATCH_EVENTS if way == BATCH else 1)


def _ways(workdir: str) -> dict[str, Callable[[], object]]:
    """Each way as a function writing one event (the batch: ``BATCH_EVENTS`` of them)."""
    import orjson
    import structlog

    sys.path[:0] = [str(REPO_ROOT)]
    from app import create_app
    from app.analytics.analytics_models import _new_event_id, _utc_now

    app = create_app()
    app.app_context().push()
    event_logger = app.extensions["event_logger"]
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.WriteLoggerFactory(file=open(Path(workdir) / "structlog.jsonl", "w")),
        cache_logger_on_first_use=True,
    )
    logger = structlog.get_logger()
    floor_fd = os.open(Path(workdir) / "floor.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    batch = [("ai_block_used", PAYLOAD, None)] * BATCH_EVENTS

    def floor() -> None:
        record = {
            "event_id": _new_event_id(),
            "event_type": "ai_block_used",
            "timestamp": _utc_now(),
            "payload": PAYLOAD,
        }
        os.write(floor_fd, orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))

    return {
        EVENT_LOGGER: lambda: event_logger.log("ai_block_used", PAYLOAD),
        STRUCTLOG: lambda: logger.info("ai_block_used", **PAYLOAD),
        FLOOR: floor,
        BATCH: lambda: event_logger.accept_all(batch),
    }


def _serve(plan: dict[str, Any]) -> None:
    """The child: warm every way up, then run each one's counted calls between two handshakes."""
    import gc

    ways = _ways(plan["workdir"])
    for _ in range(2):
        for way in WAYS:
            for _ in range(_calls(way, plan["warm"])):
                ways[way]()
    gc.collect()
    gc.freeze()
    for way in WAYS:
        calls = ways[way]
        instructions._handshake("ready")
        for _ in range(_calls(way, plan["count"])):
            calls()
        instructions._handshake("ready")
    print("done", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _serve(json.loads(sys.argv[2]))
    else:
        with tempfile.TemporaryDirectory(prefix="telemetry-event-cost-") as workdir:
            counted = measure(Path(workdir) / "events")
        print(f"{EVENT_LOGGER} ÷ {STRUCTLOG}: {counted[EVENT_LOGGER] / counted[STRUCTLOG]:.2f}")
