"""The ingestion budget per client address (SPEC S10): events counted, 429 with Retry-After, proxies, Redis."""

import logging
import time

import pytest
from app import create_app
from app.config import ConfigError
from prometheus_client import REGISTRY
from redis_server import RedisServer, SilentPort

LOG = "/api/telemetry/log"
BATCH = "/api/telemetry/batch"
EVENT = {"event_type": "chapter_visit", "payload": {"chapter_id": "ch-1"}}
# Small enough to use up in a test; a full batch (TELEMETRY_MAX_BATCH_EVENTS) must fit in it.
LIMITED = {"TELEMETRY_RATE_LIMIT": "10/minute", "TELEMETRY_MAX_BATCH_EVENTS": 10}
# Loopback Redis on a busy test machine: a generous timeout, so no verdict is skipped for slowness.
PATIENT = "?socket_timeout=2&socket_connect_timeout=2"


def metric(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def batch(n):
    return {"events": [EVENT] * n}


def post_events(client, count, **kwargs):
    """Post ``count`` single events; their statuses."""
    return [client.post(LOG, json=EVENT, **kwargs).status_code for _ in range(count)]


@pytest.fixture
def limited_app(make_app):
    return make_app(LIMITED)


@pytest.fixture
def limited_client(limited_app):
    return limited_app.test_client()


@pytest.fixture
def events(limited_app, read_events):
    return lambda: read_events(limited_app)


def test_defaults_limit_3000_events_a_minute_in_this_process(app, client):
    assert app.config["TELEMETRY_RATE_LIMIT"] == "3000/minute"
    assert app.config["TELEMETRY_RATE_LIMIT_STORAGE"] == "memory://"
    assert app.config["TRUSTED_PROXY_HOPS"] == 0
    assert client.get("/api/telemetry/health").get_json()["rate_limiter"] == "ok"


def test_the_budget_admits_exactly_the_limit_then_refuses_with_retry_after(limited_client, events):
    assert post_events(limited_client, 10) == [202] * 10

    refused = limited_client.post(LOG, json=EVENT)

    assert refused.status_code == 429
    assert refused.mimetype == "application/problem+json"
    assert refused.get_json()["title"] == "Too Many Requests"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert len(events()) == 10


def test_a_batch_costs_its_events_and_is_refused_whole(limited_client, events):
    before = metric("telemetry_events_rejected_total", reason="429")

    assert limited_client.post(BATCH, json=batch(6)).status_code == 202
    refused = limited_client.post(BATCH, json=batch(5))

    assert refused.status_code == 429 and "Retry-After" in refused.headers
    assert "results" not in refused.get_json()
    assert len(events()) == 6
    assert metric("telemetry_events_rejected_total", reason="429") - before == 5


def test_invalid_events_of_a_batch_cost_too(limited_client):
    mixed = {"events": [EVENT, {"event_type": "nope"}] * 5}

    assert limited_client.post(BATCH, json=mixed).status_code == 202
    assert limited_client.post(LOG, json=EVENT).status_code == 429


def test_a_bad_body_gets_its_own_answer_before_the_budget(limited_client):
    post_events(limited_client, 11)

    assert limited_client.post(LOG, data="{", content_type="application/json").status_code == 400
    assert limited_client.post(LOG, data="{}", content_type="application/xml").status_code == 415
    assert limited_client.post(BATCH, json={"events": []}).status_code == 422
    assert limited_client.post(LOG, json={"event_type": "nope"}).status_code == 422


def test_a_missing_token_is_401_before_the_budget(make_app):
    client = make_app({**LIMITED, "TELEMETRY_INGEST_TOKEN": "s3cret"}).test_client()
    auth = {"Authorization": "Bearer s3cret"}
    post_events(client, 11, headers=auth)

    assert client.post(LOG, json=EVENT).status_code == 401
    assert client.post(LOG, json=EVENT, headers=auth).status_code == 429


def test_each_client_address_has_its_own_budget(limited_client):
    assert post_events(limited_client, 11, environ_base={"REMOTE_ADDR": "198.51.100.1"})[-1] == 429

    assert post_events(limited_client, 1, environ_base={"REMOTE_ADDR": "198.51.100.2"}) == [202]


def test_ai_blocks_are_not_limited(limited_client):
    post_events(limited_client, 11)

    assert limited_client.post("/api/ai/quiz", json={"chapter_id": "ch-1"}).status_code == 200


def test_off_never_refuses(make_app):
    client = make_app({"TELEMETRY_RATE_LIMIT": "off", "TELEMETRY_MAX_BATCH_EVENTS": 100}).test_client()

    assert [client.post(BATCH, json=batch(100)).status_code for _ in range(31)] == [202] * 31
    assert client.get("/api/telemetry/health").get_json()["rate_limiter"] == "off"


def test_several_limits_joined_by_semicolons_all_apply(make_app):
    client = make_app({"TELEMETRY_RATE_LIMIT": "20/hour;10/minute", "TELEMETRY_MAX_BATCH_EVENTS": 10}).test_client()

    assert post_events(client, 11) == [202] * 10 + [429]


def test_two_apps_count_on_their_own(make_app):
    first, second = make_app(LIMITED).test_client(), make_app(LIMITED).test_client()
    post_events(first, 11)

    assert post_events(second, 1) == [202]


def test_memory_counting_starts_no_thread_and_sweeps_expired_counters(monkeypatch):
    """limits' MemoryStorage starts a timer thread every 10 ms of traffic; ours sweeps on the request path."""
    import threading

    from app.analytics import rate_limit
    from limits import parse
    from limits.strategies import FixedWindowRateLimiter

    storage = rate_limit.SweptMemoryStorage("memory://")
    limiter = FixedWindowRateLimiter(storage)
    second = parse("5/second")
    started = []
    monkeypatch.setattr(threading.Thread, "start", lambda thread: started.append(thread))
    assert [limiter.hit(second, "t", "1.2.3.4") for _ in range(6)] == [True] * 5 + [False]
    for address in range(100):
        limiter.hit(second, "t", f"10.0.0.{address}")
    assert started == []
    # Expired, the counters are no longer counted, and the next sweep removes them.
    monkeypatch.setattr(rate_limit, "MEMORY_SWEEP_INTERVAL", 0.0)
    time.sleep(1.1)
    assert limiter.hit(second, "t", "1.2.3.4")
    assert set(storage.storage) == {second.key_for("t", "1.2.3.4")}
    assert started == []


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("TELEMETRY_RATE_LIMIT", "lots", 'TELEMETRY_RATE_LIMIT must be "off" or limits such as "3000/minute"'),
        ("TELEMETRY_RATE_LIMIT", "3000/fortnight", "TELEMETRY_RATE_LIMIT must be"),
        ("TELEMETRY_RATE_LIMIT", "", "TELEMETRY_RATE_LIMIT must be"),
        ("TELEMETRY_RATE_LIMIT", 3000, "TELEMETRY_RATE_LIMIT must be"),
        ("TELEMETRY_RATE_LIMIT_STORAGE", "bogus://x", "TELEMETRY_RATE_LIMIT_STORAGE must be a limits storage URI"),
        ("TELEMETRY_RATE_LIMIT_STORAGE", "async+memory://", "TELEMETRY_RATE_LIMIT_STORAGE must be"),
        ("TELEMETRY_RATE_LIMIT_STORAGE", "redis://127.0.0.1:port/0", "TELEMETRY_RATE_LIMIT_STORAGE is not a usable"),
        ("TRUSTED_PROXY_HOPS", "-1", "TRUSTED_PROXY_HOPS must be an integer from 0"),
        ("TRUSTED_PROXY_HOPS", "one", "TRUSTED_PROXY_HOPS must be an integer"),
    ],
)
def test_bad_values_stop_startup_with_one_line(setting, value, message, tmp_path):
    with pytest.raises(ConfigError) as raised:
        create_app({"TESTING": True, "TELEMETRY_EVENTS_LOG": str(tmp_path / "e.jsonl"), setting: value})

    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_limit_below_a_full_batch_refuses_only_batches_larger_than_it(make_app):
    client = make_app({"TELEMETRY_RATE_LIMIT": "5/minute"}).test_client()
    too_large = {"events": [{"event_type": "chapter_visit"}] * 6}

    refused = client.post("/api/telemetry/batch", json=too_large)

    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1


def test_environment_strings_are_read(make_app, monkeypatch):
    monkeypatch.setenv("FLASK_TELEMETRY_RATE_LIMIT", "off")
    monkeypatch.setenv("FLASK_TRUSTED_PROXY_HOPS", "1")

    app = make_app()

    assert app.config["TRUSTED_PROXY_HOPS"] == 1
    assert app.test_client().get("/api/telemetry/health").get_json()["rate_limiter"] == "off"


class TestClientAddress:
    """X-Forwarded-For counts only behind TRUSTED_PROXY_HOPS proxies; the address is never written."""

    ADDRESS = "203.0.113.77"

    def test_forged_forwarded_for_changes_nothing_without_trusted_proxies(self, limited_client):
        statuses = [
            limited_client.post(LOG, json=EVENT, headers={"X-Forwarded-For": f"192.0.2.{n}"}).status_code
            for n in range(11)
        ]

        assert statuses == [202] * 10 + [429]

    def test_behind_one_proxy_the_address_it_saw_is_limited(self, make_app):
        client = make_app({**LIMITED, "TRUSTED_PROXY_HOPS": 1}).test_client()
        # The proxy appends the peer it saw; whatever the client wrote before that is forged.
        seen = [{"X-Forwarded-For": f"192.0.2.{n}, {self.ADDRESS}"} for n in range(11)]

        statuses = [client.post(LOG, json=EVENT, headers=headers).status_code for headers in seen]
        other = post_events(client, 1, headers={"X-Forwarded-For": "198.51.100.9"})

        assert statuses == [202] * 10 + [429]
        assert other == [202]

    def test_the_address_is_on_no_event_line_and_in_no_log(self, make_app, read_events, caplog):
        app = make_app({**LIMITED, "TRUSTED_PROXY_HOPS": 1})
        client = app.test_client()
        headers = {"X-Forwarded-For": self.ADDRESS}
        with caplog.at_level(logging.DEBUG):
            post_events(client, 11, headers=headers)
            client.post(BATCH, json=batch(2), headers=headers)

        assert read_events(app)
        with open(app.config["TELEMETRY_EVENTS_LOG"], encoding="ascii") as stream:
            written = stream.read()
        assert self.ADDRESS not in written
        assert self.ADDRESS not in caplog.text
        assert self.ADDRESS not in client.post(LOG, json=EVENT, headers=headers).get_data(as_text=True)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


class TestRedisStorage:
    """One count in a real Redis for every app (worker, host) that names it."""

    def test_two_apps_share_one_budget(self, make_app, redis_server):
        redis_server.command("FLUSHALL")
        config = {**LIMITED, "TELEMETRY_RATE_LIMIT_STORAGE": redis_server.url + PATIENT}
        first, second = make_app(config).test_client(), make_app(config).test_client()

        statuses = post_events(first, 6) + post_events(second, 4)
        refused = second.post(LOG, json=EVENT)

        assert statuses == [202] * 10
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert first.get("/api/telemetry/health").get_json()["rate_limiter"] == "ok"

    def test_a_stopped_redis_admits_requests_and_health_says_so(self, make_app, tmp_path, caplog):
        with RedisServer(tmp_path) as server:
            app = make_app({**LIMITED, "TELEMETRY_RATE_LIMIT_STORAGE": server.url + PATIENT})
            client = app.test_client()
            assert post_events(client, 1) == [202]
            server.stop()
            errors_before = metric("telemetry_rate_limiter_errors_total")

            with caplog.at_level(logging.WARNING, logger=app.logger.name):
                statuses = post_events(client, 12)
            health = client.get("/api/telemetry/health")

        assert statuses == [202] * 12
        assert health.status_code == 200 and health.get_json()["rate_limiter"] == "unavailable"
        assert metric("telemetry_rate_limiter_errors_total") - errors_before == 12
        warnings = [record for record in caplog.records if "rate limit storage failed" in record.getMessage()]
        assert len(warnings) == 1

    def test_a_port_that_never_answers_costs_one_request_a_tenth_of_a_second(self, make_app):
        with SilentPort() as silent:
            app = make_app({**LIMITED, "TELEMETRY_RATE_LIMIT_STORAGE": silent.url})
            client = app.test_client()
            started = time.monotonic()
            first = client.post(LOG, json=EVENT)
            waited = time.monotonic() - started
            later = post_events(client, 5)
            connections = silent.connections()

        assert first.status_code == 202 and later == [202] * 5
        assert 0.09 <= waited < 1.0
        # The storage is left alone after the failure: no request after the first tried it.
        assert connections == 1

    def test_after_a_pause_the_storage_is_tried_again_and_recovers(self, make_app, tmp_path):
        with RedisServer(tmp_path) as server:
            app = make_app({**LIMITED, "TELEMETRY_RATE_LIMIT_STORAGE": server.url + PATIENT})
            limiter = app.extensions["rate_limiter"]
            limiter.pause = 0.2
            client = app.test_client()
            server.stop()
            post_events(client, 1)
            server.start_on_same_port()
            deadline = time.monotonic() + 5
            # Admitted unchecked while the storage is left alone; the first one after the pause is counted.
            while client.get("/api/telemetry/health").get_json()["rate_limiter"] == "unavailable":
                assert time.monotonic() < deadline, "the storage was not tried again"
                assert post_events(client, 1) == [202]
            counted = post_events(client, 10)

        assert counted == [202] * 9 + [429]
