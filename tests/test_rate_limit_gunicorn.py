"""Under a real gunicorn: workers that share one real Redis admit exactly the limit between them."""

import pytest
from gunicorn_server import GunicornServer
from redis_server import RedisServer

pytestmark = pytest.mark.gunicorn

LOG = "/api/telemetry/log"
EVENT = {"event_type": "chapter_visit", "payload": {"chapter_id": "ch-1"}}


def test_three_preloaded_workers_sharing_redis_admit_exactly_the_limit(tmp_path):
    with RedisServer(tmp_path) as redis:
        env = {
            "FLASK_TELEMETRY_RATE_LIMIT": "30/hour",
            "FLASK_TELEMETRY_MAX_BATCH_EVENTS": "10",
            # A busy test machine must not turn a slow verdict into an admitted request.
            "FLASK_TELEMETRY_RATE_LIMIT_STORAGE": redis.url + "?socket_timeout=2&socket_connect_timeout=2",
        }
        # --preload: the app (and its Redis client) is made in the master; each worker starts afresh.
        with GunicornServer(tmp_path, "--preload", workers=3, env=env) as server:
            answers = server.burst(LOG, [EVENT] * 40, concurrency=12)
            status, _, health = server.request("GET", "/api/telemetry/health")
            server.stop()
            lines = server.event_lines()

    statuses = [status for status, _ in answers]
    assert statuses.count(202) == 30 and statuses.count(429) == 10, statuses
    assert len(lines) == 30
    assert status == 200 and health["rate_limiter"] == "ok"
