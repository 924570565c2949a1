"""nginx in front, for real (SPEC S13): the repository's nginx.conf before gunicorn; slow clients, budgets, floods."""

import http.client
import json
import re
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest
from gunicorn_server import REPO_ROOT, GunicornServer
from nginx_server import DEPLOY_CONF, NginxServer
from redis_server import RedisServer

LOG = "/api/telemetry/log"
EVENT = json.dumps({"event_type": "chapter_visit", "payload": {"chapter_id": "ch-1"}})
# The README's serve command, behind one proxy.
SERVE = ["--config", "backend/gunicorn.conf.py"]
ENV = {"FLASK_TRUSTED_PROXY_HOPS": "1", "FLASK_TELEMETRY_RATE_LIMIT": "3/minute"}
# What nginx itself answers to a flood (the API's own 429 says "events").
NGINX_TOO_MANY = "Too many requests from this address"
# A page's tracker on another origin.
ORIGIN = {"Origin": "http://textbook.example"}

pytestmark = pytest.mark.gunicorn


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("nginx")
    # Budgets shared by both workers, as in production; memory:// would give each worker its own.
    with RedisServer(workdir) as redis:
        env = {**ENV, "FLASK_TELEMETRY_RATE_LIMIT_STORAGE": redis.url}
        with (
            GunicornServer(workdir, *SERVE, workers=2, env=env) as gunicorn,
            NginxServer(workdir, gunicorn.port) as nginx,
        ):
            yield nginx, gunicorn


def post(port, source, body=EVENT, headers=None, timeout=10):
    """POST ``body`` to /log from the loopback address ``source``; (status, headers, parsed body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(source, 0))
    try:
        connection.request("POST", LOG, body, {"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        return response.status, response.headers, json.loads(response.read() or b"null")
    finally:
        connection.close()


def test_the_readme_shows_the_deployed_file_verbatim():
    readme = (REPO_ROOT / "README.md").read_text()
    match = re.search(r"<!-- backend/deploy/nginx.conf -->\n```nginx\n(.*?)```\n", readme, re.DOTALL)

    assert match, "the README's nginx block is marked <!-- backend/deploy/nginx.conf -->"
    assert match[1] == DEPLOY_CONF.read_text()


def test_idle_connections_and_slow_bodies_do_not_delay_other_readers(proxied):
    nginx, gunicorn = proxied
    held = []
    try:
        for _ in range(50):
            held.append(socket.create_connection(("127.0.0.1", nginx.port), timeout=5))
        head = f"POST {LOG} HTTP/1.1\r\nHost: textbook\r\nContent-Type: application/json\r\n"
        head += "Content-Length: 2000\r\n\r\n"  # 20 bytes of it sent, the rest never
        for _ in range(10):
            slow = socket.create_connection(("127.0.0.1", nginx.port), timeout=5)
            slow.sendall(head.encode() + EVENT.encode()[:20])
            held.append(slow)

        # Each reader from an address of its own: their budgets are theirs (TRUSTED_PROXY_HOPS=1).
        answers = [post(nginx.port, f"127.0.0.{20 + n}", timeout=1)[0] for n in range(5)]

        for connection in held:
            connection.setblocking(False)
            with pytest.raises(BlockingIOError):
                connection.recv(1)  # still held open, unanswered
    finally:
        for connection in held:
            connection.close()

    assert answers == [202] * 5


def test_behind_nginx_each_client_has_its_own_budget(proxied):
    nginx, gunicorn = proxied

    first = [post(nginx.port, "127.0.0.2")[0] for _ in range(4)]
    # A forged X-Forwarded-For is replaced by the address nginx saw: no fresh budget.
    forged = post(nginx.port, "127.0.0.2", headers={"X-Forwarded-For": "203.0.113.9"})[0]
    second = [post(nginx.port, "127.0.0.3")[0] for _ in range(3)]

    assert first == [202, 202, 202, 429]
    assert forged == 429
    assert second == [202, 202, 202]


def test_limit_req_answers_a_flood_with_429(proxied):
    nginx, gunicorn = proxied
    before = len(gunicorn.event_lines(while_running=True))

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: post(nginx.port, "127.0.0.4", headers=ORIGIN), range(300)))

    refused = [
        (headers, body) for status, headers, body in answers if status == 429 and NGINX_TOO_MANY in body["detail"]
    ]
    assert refused, "nginx refused none of 300 requests sent at once"
    headers, body = refused[0]
    assert headers["Content-Type"] == "application/problem+json"
    assert headers["Retry-After"] == "1"
    # A page on another origin can read it, and when to retry.
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Access-Control-Expose-Headers"] == "Retry-After"
    assert body["status"] == 429
    # Of what reached the API, its budget let three events through.
    assert len(gunicorn.event_lines(while_running=True)) - before == 3
