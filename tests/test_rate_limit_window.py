"""The moving window (SPEC S13): no double burst across a window's edge, and a Retry-After that is right for batches."""

import random
import time

import pytest
from app.analytics.rate_limit import SweptMemoryStorage
from limits.storage import MemoryStorage
from redis_server import RedisServer

# Far from any real time, on an edge of every fixed window of 2 s and 60 s.
EDGE = 1_800_000_000.0


@pytest.fixture(params=["memory", "redis"])
def storage(request, tmp_path):
    if request.param == "memory":
        yield "memory://"
    else:
        with RedisServer(tmp_path) as redis:
            yield redis.url + "?socket_timeout=2&socket_connect_timeout=2"


@pytest.fixture
def clock(monkeypatch):
    """time.time() as the test sets it, for limits and the app alike."""
    now = [EDGE]
    monkeypatch.setattr(time, "time", lambda: now[0])
    return now


def limiter_of(make_app, limit, storage):
    app = make_app({"TELEMETRY_RATE_LIMIT": limit, "TELEMETRY_RATE_LIMIT_STORAGE": storage})
    return app, app.extensions["rate_limiter"]


def test_no_double_burst_across_a_window_edge(make_app, storage, clock):
    app, limiter = limiter_of(make_app, "20/2second", storage)
    with app.app_context():
        clock[0] = EDGE - 0.05
        before_edge = [limiter.retry_after("192.0.2.1", 1) for _ in range(20)]
        clock[0] = EDGE + 0.02
        after_edge = [limiter.retry_after("192.0.2.1", 1) for _ in range(20)]

    # A fixed window would admit these 40 in 70 ms; the moving window admits 20.
    assert before_edge == [None] * 20
    assert after_edge == [2] * 20


def test_retry_after_is_when_the_batch_fits(make_app, storage, clock):
    app, limiter = limiter_of(make_app, "10/minute", storage)
    with app.app_context():
        assert limiter.retry_after("192.0.2.1", 6) is None
        clock[0] = EDGE + 10
        assert limiter.retry_after("192.0.2.1", 4) is None
        clock[0] = EDGE + 20
        # One event or five: the first six (at EDGE) must expire, at EDGE + 60.
        one, five = limiter.retry_after("192.0.2.1", 1), limiter.retry_after("192.0.2.1", 5)
        # Seven: three of the four at EDGE + 10 must expire too, at EDGE + 70.
        seven = limiter.retry_after("192.0.2.1", 7)
        larger_than_the_limit = limiter.retry_after("192.0.2.1", 11)
        clock[0] = EDGE + 59.9
        still_early = limiter.retry_after("192.0.2.1", 5)
        clock[0] = EDGE + 60.1
        on_time = limiter.retry_after("192.0.2.1", 5)

    assert (one, five, seven) == (40, 40, 50)
    assert larger_than_the_limit == 60
    assert still_early == 1
    assert on_time is None


def test_a_refused_request_spends_nothing(make_app, storage, clock):
    app, limiter = limiter_of(make_app, "3/minute", storage)
    with app.app_context():
        admitted = [limiter.retry_after("192.0.2.1", 1) for _ in range(3)]
        clock[0] = EDGE + 30
        refused = [limiter.retry_after("192.0.2.1", 1) for _ in range(50)]
        clock[0] = EDGE + 60.1
        after_a_minute = limiter.retry_after("192.0.2.1", 3)

    assert admitted == [None] * 3
    assert refused == [30] * 50
    assert after_a_minute is None


def test_the_compact_memory_window_answers_as_limits_memory_storage(clock, monkeypatch):
    # The same hits, in the same clock, to limits' MemoryStorage and ours: every answer the same.
    theirs, ours = MemoryStorage(), SweptMemoryStorage("memory://")
    # Both swept at the same moments, below, rather than by their own timers.
    monkeypatch.setattr(theirs, "_MemoryStorage__schedule_expiry", lambda: None)
    monkeypatch.setattr(ours, "_MemoryStorage__schedule_expiry", lambda: None)
    # MemoryStorage's constructor starts a sweep 10 ms later in a thread of its own; on a busy
    # machine it would otherwise sweep one storage in the middle of the steps and not the other.
    theirs.timer.join()
    ours.timer.join()
    steps = random.Random(26)
    for step in range(2_000):
        clock[0] += steps.choice((0.0, 0.001, 0.3, 1.7, 4.0))
        key, limit, amount = steps.choice(("a", "b")), steps.choice((3, 10)), steps.choice((1, 1, 2, 5, 11))
        expiry = 2 if key == "a" else 5
        assert ours.acquire_entry(key, limit, expiry, amount) == theirs.acquire_entry(key, limit, expiry, amount)
        assert ours.get_moving_window(key, limit, expiry) == theirs.get_moving_window(key, limit, expiry)
        newest = steps.randrange(12)
        entries = theirs.events.get(key, [])
        assert ours.admitted_at(key, newest) == (entries[newest].atime if newest < len(entries) else None)
        if step % 97 == 0:
            theirs._MemoryStorage__expire_events()
            ours._MemoryStorage__expire_events()
            assert {
                key: [entry.atime for entry in reversed(entries)] for key, entries in theirs.events.items() if entries
            } == {key: list(times) for key, times in ours.events.items()}
