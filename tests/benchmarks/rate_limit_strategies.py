"""limits' fixed window, sliding window counter and moving window: instructions per hit (callgrind), memory, Redis.

Run alone: ``python tests/benchmarks/rate_limit_strategies.py`` (valgrind and
redis-server needed). Each strategy is measured in one child under callgrind:
built, warmed up, then ``HITS`` hits (one event each, or a batch of 100) are
counted between a zero and a dump (``callgrind_control``), so start-up stays
out of the count. Memory is what one client's state costs after a full
budget at 3000/minute: ``tracemalloc`` in process, ``MEMORY USAGE`` in Redis.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent.parent / "backend"), str(HERE.parent)]

from limits import parse  # noqa: E402
from limits.storage import storage_from_string  # noqa: E402
from limits.strategies import (  # noqa: E402
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    SlidingWindowCounterRateLimiter,
)

STRATEGIES = {
    "fixed-window": FixedWindowRateLimiter,
    "sliding-window-counter": SlidingWindowCounterRateLimiter,
    "moving-window": MovingWindowRateLimiter,
}
HITS = 500
LIMIT = "3000/minute"
_TOTALS = re.compile(r"^totals:\s*(\d+)", re.MULTILINE)


def _storage(uri):
    if uri.startswith("memory"):
        from app.analytics.rate_limit import SweptMemoryStorage

        return SweptMemoryStorage(uri)
    return storage_from_string(uri)


def child(strategy, uri, cost, keys):
    """Runs under callgrind: warm up, then HITS and 3 x HITS hits, each between a zero and a dump."""
    limiter = STRATEGIES[strategy](_storage(uri))
    item = parse("1000000/minute")
    names = [f"2001:db8:{index:x}::/64" for index in range(keys)]
    for index in range(50):
        limiter.hit(item, "telemetry", names[index % keys], cost=cost)
    for count in (HITS, 3 * HITS):
        subprocess.run(["callgrind_control", "--zero", str(os.getpid())], check=True, capture_output=True)
        for index in range(count):
            limiter.hit(item, "telemetry", names[index % keys], cost=cost)
        subprocess.run(["callgrind_control", "--dump", str(os.getpid())], check=True, capture_output=True)


def instructions(strategy, uri, cost, keys, workdir):
    """Instructions per hit: the two counts' difference over 2 x HITS hits (what zero and dump cost cancels)."""
    out = Path(workdir) / f"callgrind.{strategy}.{cost}.{keys}.{uri.split(':')[0]}"
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}.%p",
        sys.executable,
        __file__,
        "--child",
        strategy,
        uri,
        str(cost),
        str(keys),
    ]
    subprocess.run(command, check=True, capture_output=True)
    (first,) = Path(workdir).glob(out.name + ".*.1")
    (second,) = Path(workdir).glob(out.name + ".*.2")
    totals = [int(_TOTALS.search(path.read_text()).group(1)) for path in (first, second)]
    return (totals[1] - totals[0]) / (2 * HITS)


def memory_per_client(strategy, uri):
    """Bytes one client's state takes once it has used a whole 3000/minute budget."""
    storage = _storage(uri)
    limiter = STRATEGIES[strategy](storage)
    item = parse(LIMIT)
    # Another client first: what the first hit of all allocates once is not this client's.
    for _ in range(30):
        limiter.hit(item, "telemetry", "warm-up", cost=100)
    if uri.startswith("memory"):
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        for _ in range(30):
            limiter.hit(item, "telemetry", "client", cost=100)
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        return sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    for _ in range(30):
        limiter.hit(item, "telemetry", "client", cost=100)
    client = storage.storage
    return sum(client.memory_usage(key) or 0 for key in client.keys("LIMITS:*client*"))


def main():
    from redis_server import RedisServer

    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        redis = RedisServer(workdir).start()
        try:
            client = __import__("redis").Redis.from_url(redis.url)
            for strategy in STRATEGIES:
                row = {}
                for label, uri in (("memory", "memory://"), ("redis", redis.url)):
                    row[f"{label} 1 event"] = instructions(strategy, uri, 1, 1, workdir)
                    row[f"{label} 1 event, 1000 clients"] = instructions(strategy, uri, 1, 1000, workdir)
                    row[f"{label} batch of 100"] = instructions(strategy, uri, 100, 1, workdir)
                    client.flushall()
                    row[f"{label} bytes per client"] = memory_per_client(strategy, uri)
                results[strategy] = row
                print(strategy, json.dumps(row), flush=True)
        finally:
            redis.stop()
    return results


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
