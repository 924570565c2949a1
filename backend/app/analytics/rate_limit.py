"""The ingestion budget of each client, counted in events by the limits library.

``TELEMETRY_RATE_LIMIT`` is parsed once, when the app is made; a request then
costs one ``hit`` per limit (a moving window: the time of each admitted event
in the last window, per client and limit, in ``memory://`` or a shared
Redis; unlike a fixed window it never admits twice the limit across a
window's edge, research.md section 22). A storage that fails is left alone
for ``pause`` seconds and requests are admitted meanwhile: the limit
protects the stream, it must never make the API unavailable.
"""

import bisect
import functools
import ipaddress
import math
import threading
import time
import urllib.parse
from array import array
from collections.abc import Mapping
from typing import Any, cast

from flask import Flask, current_app
from limits import RateLimitItem, parse_many
from limits.errors import ConfigurationError, StorageError

# limits re-exports its SCHEMES without naming them in __all__.
from limits.storage import (  # type: ignore[attr-defined]
    SCHEMES,
    MemoryStorage,
    MovingWindowSupport,
    Storage,
    storage_from_string,
)
from limits.strategies import MovingWindowRateLimiter
from redis.backoff import NoBackoff
from redis.retry import Retry

from .. import metrics
from ..config import ConfigError
from ..context import this_app
from ..per_process import reset_after_fork

# A Redis that does not answer costs a request at most this long (connect, then reply) ...
STORAGE_TIMEOUT = 0.1
# ... and is then left alone this long before it is tried again.
STORAGE_PAUSE = 5.0
# Keys in a shared storage name the API, so other users of one Redis do not collide.
NAMESPACE = "telemetry"
# Storages reached with redis-py: no retries, so one failure costs one timeout.
_REDIS_SCHEMES = frozenset({"redis", "rediss", "redis+unix"})
# How often expired counters of memory:// are removed (they are ignored once expired, sooner).
MEMORY_SWEEP_INTERVAL = 1.0
# Client keys kept per app and process: addresses repeat, a flood of new ones is evicted.
CLIENT_CACHE_SIZE = 4096


class SweptMemoryStorage(MemoryStorage):
    """``limits``' MemoryStorage whose expired entries are removed by the requests themselves, kept compact.

    MemoryStorage starts a new ``threading.Timer`` thread for its sweep
    whenever the last one has ended, 10 ms after it started: about a hundred
    threads a second under steady traffic, each costing some 90,000
    instructions, the rate limiter's largest cost (research.md). Here the
    request that finds the sweep due runs it, at most once a second.
    Counting is MemoryStorage's own; a counter is ignored as soon as it has
    expired, whether or not it has been swept yet.

    A moving window's admitted events are kept as their times, oldest first,
    in an ``array("d")``: MemoryStorage keeps an object of some 180 bytes
    for each, newest first, and puts each new one at the head of its list,
    which copies the whole list. The answers are MemoryStorage's, entry for
    entry: its index ``i`` is this array's ``len - 1 - i``.
    """

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: Any) -> None:
        self._next_sweep = 0.0
        # Each key's window, in seconds, for the sweep: every entry of a key shares it.
        self._windows: dict[str, float] = {}
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)

    @property
    def _times(self) -> dict[str, "array[float]"]:
        # MemoryStorage's dict of moving windows, its values arrays here (see above).
        return cast(dict[str, "array[float]"], self.events)

    # Replaces the method MemoryStorage calls as self.__schedule_expiry() on every hit.
    def _MemoryStorage__schedule_expiry(self) -> None:
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + MEMORY_SWEEP_INTERVAL
            self._MemoryStorage__expire_events()

    # Replaces MemoryStorage's sweep (reached by its mangled name, as MemoryStorage itself calls it).
    def _MemoryStorage__expire_events(self) -> None:
        now = time.time()
        for key in list(self._times):
            with self.locks[key]:
                times = self._times.get(key)
                if times:
                    # An entry expires when its time is a whole window ago.
                    del times[: bisect.bisect_right(times, now - self._windows.get(key, 0.0))]
                if not times:
                    self._times.pop(key, None)
                    self._windows.pop(key, None)
                    self.locks.pop(key, None)
        for key in list(self.expirations):
            if self.expirations[key] <= time.time():
                self.storage.pop(key, None)
                self.expirations.pop(key, None)
                self.locks.pop(key, None)

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        """Admit ``amount`` more events of ``key`` if its window holds at most ``limit - amount``."""
        if amount > limit:
            return False
        self._MemoryStorage__schedule_expiry()
        with self.locks[key]:
            times = self._times.get(key)
            if times is None:
                times = self._times[key] = array("d")
            self._windows[key] = expiry
            timestamp = time.time()
            # MemoryStorage's entry at index limit - amount of its newest-first list.
            index = len(times) - 1 - (limit - amount)
            if index >= 0 and times[index] >= timestamp - expiry:
                return False
            times.extend(array("d", (timestamp,)) * amount)
            return True

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        """The time of the oldest event of ``key`` still in its window and how many are; MemoryStorage's answer."""
        timestamp = time.time()
        times = self._times.get(key)
        if times:
            count = len(times) - bisect.bisect_right(times, timestamp - expiry)
            # With none in the window MemoryStorage answers its oldest entry's time.
            return times[len(times) - count] if count else times[0], count
        return timestamp, 0

    def admitted_at(self, key: str, newest: int) -> float | None:
        """The time of ``key``'s ``newest``-th newest admitted event (0: the newest), or None."""
        times = self._times.get(key)
        return times[len(times) - 1 - newest] if times is not None and newest < len(times) else None


class IngestRateLimiter:
    """One app's limits and, in each process, its storage and the storage's state."""

    _limiter: MovingWindowRateLimiter | None

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.limits = _limits(config)
        self._storage_uri, self._options = _storage(config["TELEMETRY_RATE_LIMIT_STORAGE"])
        self.warn_interval = config["TELEMETRY_WARN_INTERVAL"]
        self.client_key = functools.lru_cache(maxsize=CLIENT_CACHE_SIZE)(
            functools.partial(client_key, ipv6_prefix=config["TELEMETRY_RATE_LIMIT_IPV6_PREFIX"])
        )
        self.pause = STORAGE_PAUSE
        self._reset()
        if self.limits and not self._storage_uri.startswith("memory:"):
            # Made now so that a bad URI stops startup; a forked worker makes its own.
            self._limiter = self._build()
        # Counts and connections are per process: after a fork the child starts afresh.
        reset_after_fork(self, IngestRateLimiter._reset)

    def _reset(self) -> None:
        self._limiter = None
        self._lock = threading.Lock()
        self._paused_until = 0.0
        self._available = True
        self._last_warning: float | None = None
        self._unwarned = 0

    def _build(self) -> MovingWindowRateLimiter:
        storage: Any
        try:
            if urllib.parse.urlsplit(self._storage_uri).scheme == "memory":
                storage = SweptMemoryStorage(self._storage_uri, wrap_exceptions=True)
            else:
                storage = storage_from_string(self._storage_uri, wrap_exceptions=True, **self._options)
        except (ConfigurationError, ValueError, TypeError) as exc:
            raise ConfigError(f"TELEMETRY_RATE_LIMIT_STORAGE is not a usable storage: {exc}") from None
        # _storage refuses the async+ schemes: a storage made here is a synchronous one.
        assert isinstance(storage, Storage)
        return MovingWindowRateLimiter(storage)

    @property
    def state(self) -> str:
        """``off``, ``ok``, or ``unavailable`` while the storage fails (health reports it)."""
        if not self.limits:
            return "off"
        return "ok" if self._available else "unavailable"

    def retry_after(self, address: str, cost: int) -> int | None:
        """Charge ``cost`` events to ``address``; seconds until its budget admits them if it cannot now, else None."""
        if not self.limits:
            return None
        if time.monotonic() < self._paused_until:
            self._admit_unchecked("the storage failed recently", count_only=True)
            return None
        limiter = self._limiter or self._start()
        client = self.client_key(address)
        try:
            for item in self.limits:
                if not limiter.hit(item, NAMESPACE, client, cost=cost):
                    admitted_at = _admitted_at(limiter, item, client, cost)
                    self._available = True
                    return max(1, math.ceil(admitted_at - time.time()))
        except StorageError as exc:
            self._paused_until = time.monotonic() + self.pause
            self._available = False
            self._admit_unchecked(f"{type(exc.storage_error).__name__}: {exc.storage_error}")
            return None
        self._available = True
        return None

    def _start(self) -> MovingWindowRateLimiter:
        with self._lock:
            if self._limiter is None:
                self._limiter = self._build()
            return self._limiter

    def _admit_unchecked(self, reason: str, count_only: bool = False) -> None:
        """Count a request admitted without a verdict; warn at most once per warn interval."""
        metrics.RATE_LIMITER_ERRORS.inc()
        now = time.monotonic()
        with self._lock:
            self._unwarned += 1
            due = self._last_warning is None or now - self._last_warning >= self.warn_interval
            if count_only or not due:
                return
            self._last_warning, count, self._unwarned = now, self._unwarned, 0
        current_app.logger.warning(
            "telemetry: the rate limit storage failed (%s); %d request(s) admitted unchecked, "
            "the storage is left alone for %g s",
            reason,
            count,
            self.pause,
        )


def _admitted_at(limiter: MovingWindowRateLimiter, item: RateLimitItem, client: str, cost: int) -> float:
    """When ``cost`` more events of ``client`` fit in ``item``'s moving window (a time.time() value).

    The window lists admitted events newest first, at most ``item.amount``;
    ``cost`` more fit once the entry at index ``amount - cost`` has expired.
    limits' own reset time is the oldest entry's: right for one event, too
    soon for a batch.
    """
    expiry = item.get_expiry()
    if cost > item.amount:
        return time.time() + expiry  # never fits: at least a whole window
    key = item.key_for(NAMESPACE, client)
    storage = limiter.storage
    if isinstance(storage, SweptMemoryStorage):
        admitted = storage.admitted_at(key, item.amount - cost)
        return (time.time() if admitted is None else admitted) + expiry
    # Redis (and the other storages' Lua or queries) search the first ``limit``
    # entries for the oldest one still in the window: given amount - cost + 1,
    # that is the entry at index amount - cost.
    # MovingWindowRateLimiter accepts only storages with moving-window support.
    assert isinstance(storage, MovingWindowSupport)
    start, _ = storage.get_moving_window(key, item.amount - cost + 1, expiry)
    return float(start) + expiry


def client_key(address: str, ipv6_prefix: int) -> str:
    """Whose budget a request is charged to: one key per client, however its address is spelled.

    An IPv4 address is itself; an IPv4-mapped IPv6 address (``::ffff:192.0.2.1``)
    is its IPv4 client; any other IPv6 address is its network of
    ``ipv6_prefix`` bits (``2001:db8::/64``), since one reader's ISP hands them
    a whole /64 or more. Text that is no IP address (a Unix socket's peer) is kept as it is.
    """
    try:
        parsed = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        # From the integer: a zone (%eth0) names the link, not the client.
        host_bits = 128 - ipv6_prefix
        return str(ipaddress.IPv6Network((int(parsed) >> host_bits << host_bits, ipv6_prefix)))
    return str(parsed)


def _limits(config: Mapping[str, Any]) -> tuple[RateLimitItem, ...]:
    """The parsed limits, or () for ``off``.

    A limit below ``TELEMETRY_MAX_BATCH_EVENTS`` is allowed (a small limit is
    how a limit is tried out); a batch larger than it is refused with 429.
    """
    value = config["TELEMETRY_RATE_LIMIT"]
    if value is False or (isinstance(value, str) and value.strip().lower() == "off"):
        return ()
    try:
        items = tuple(parse_many(value)) if isinstance(value, str) else ()
    except ValueError:
        items = ()
    if not items:
        raise ConfigError(
            f'TELEMETRY_RATE_LIMIT must be "off" or limits such as "3000/minute" (several joined by ";"), got {value!r}'
        )
    return items


def _storage(uri: Any) -> tuple[str, dict[str, Any]]:
    """The storage URI and the options its storage is made with; an unknown scheme is a bad value."""
    scheme = urllib.parse.urlsplit(uri).scheme if isinstance(uri, str) else ""
    if scheme not in SCHEMES or scheme.startswith("async+"):
        raise ConfigError(
            "TELEMETRY_RATE_LIMIT_STORAGE must be a limits storage URI such as memory:// "
            f"or redis://host:6379/0, got scheme {scheme!r}"
        )
    if scheme not in _REDIS_SCHEMES:
        return uri, {}
    # Query parameters of the URI (e.g. ?socket_timeout=0.5) still win over these.
    return uri, {
        "socket_timeout": STORAGE_TIMEOUT,
        "socket_connect_timeout": STORAGE_TIMEOUT,
        "retry": Retry(NoBackoff(), 0),
    }


def init_app(app: Flask) -> None:
    """Set up the app's rate limiter from its config (``app.extensions["rate_limiter"]``)."""
    app.extensions["rate_limiter"] = IngestRateLimiter(app.config)


def get_rate_limiter() -> IngestRateLimiter:
    """The rate limiter of the current app."""
    limiter: IngestRateLimiter = this_app().extensions["rate_limiter"]
    return limiter
