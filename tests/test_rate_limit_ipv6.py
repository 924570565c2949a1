"""Budgets per IPv6 network, IPv4-mapped addresses as their IPv4 client, one client per address (SPEC S13)."""

import http.client
import json
import re
import socket

import pytest
from app import create_app
from app.analytics.rate_limit import client_key
from app.config import ConfigError
from gunicorn_server import GunicornServer

LOG = "/api/telemetry/log"
EVENT = {"event_type": "chapter_visit", "payload": {"chapter_id": "ch-1"}}
PROXIED = {"TELEMETRY_RATE_LIMIT": "5/minute", "TRUSTED_PROXY_HOPS": 1}


def has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize(
    ("address", "prefix", "client"),
    [
        ("192.0.2.1", 64, "192.0.2.1"),
        ("::ffff:192.0.2.1", 64, "192.0.2.1"),
        ("::FFFF:c000:0201", 64, "192.0.2.1"),
        ("2001:db8::1", 64, "2001:db8::/64"),
        ("2001:DB8:0:0:ffff:ffff:ffff:ffff", 64, "2001:db8::/64"),
        ("2001:db8:0:1::1", 64, "2001:db8:0:1::/64"),
        ("2001:db8::0:1", 128, "2001:db8::1/128"),
        ("2001:0db8:0000::0001", 128, "2001:db8::1/128"),
        ("[2001:db8::1]", 128, "2001:db8::1/128"),
        ("fe80::1%eth0", 64, "fe80::/64"),
        ("2001:db8:abcd:ef00::1", 48, "2001:db8:abcd::/48"),
        ("unix-socket-peer", 64, "unix-socket-peer"),
        ("", 64, ""),
    ],
)
def test_each_spelling_of_an_address_is_one_client(address, prefix, client):
    assert client_key(address, prefix) == client


def test_default_prefix_is_64(app):
    assert app.config["TELEMETRY_RATE_LIMIT_IPV6_PREFIX"] == 64


@pytest.mark.parametrize("value", ["31", "129", 0, "sixty-four", "64.5", True])
def test_a_bad_prefix_stops_startup_with_one_line(value, tmp_path):
    with pytest.raises(ConfigError) as raised:
        create_app(
            {
                "TESTING": True,
                "TELEMETRY_EVENTS_LOG": str(tmp_path / "e.jsonl"),
                "TELEMETRY_RATE_LIMIT_IPV6_PREFIX": value,
            }
        )

    assert "TELEMETRY_RATE_LIMIT_IPV6_PREFIX must be an integer" in str(raised.value)
    assert "\n" not in str(raised.value)


def _statuses(client, forwarded_for):
    return [client.post(LOG, json=EVENT, headers={"X-Forwarded-For": address}).status_code for address in forwarded_for]


def test_fifty_addresses_of_one_64_share_one_budget(make_app, read_events):
    app = make_app(PROXIED)

    statuses = _statuses(app.test_client(), [f"2001:db8:1:2::{n:x}" for n in range(1, 51)])

    assert statuses == [202] * 5 + [429] * 45
    assert len(read_events(app)) == 5


def test_another_64_has_its_own_budget(make_app):
    client = make_app(PROXIED).test_client()

    first = _statuses(client, ["2001:db8:1:2::1"] * 6)
    neighbour = _statuses(client, ["2001:db8:1:3::1"])

    assert first == [202] * 5 + [429]
    assert neighbour == [202]


def test_a_longer_prefix_tells_addresses_of_one_64_apart(make_app):
    client = make_app({**PROXIED, "TELEMETRY_RATE_LIMIT_IPV6_PREFIX": 128}).test_client()

    statuses = _statuses(client, [f"2001:db8:1:2::{n:x}" for n in range(1, 11)])

    assert statuses == [202] * 10


def test_spellings_of_one_address_share_one_budget(make_app):
    client = make_app({**PROXIED, "TELEMETRY_RATE_LIMIT_IPV6_PREFIX": 128}).test_client()

    ipv6 = _statuses(
        client, ["2001:db8::1", "2001:db8::0:1", "2001:DB8:0:0:0:0:0:1", "2001:db8::1", "2001:db8::1", "2001:db8::1"]
    )
    ipv4 = _statuses(
        client, ["192.0.2.1", "::ffff:192.0.2.1", "::ffff:c000:201", "192.0.2.1", "192.0.2.1", "192.0.2.1"]
    )

    assert ipv6 == [202] * 5 + [429]
    assert ipv4 == [202] * 5 + [429]


def _post(host, port):
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request("POST", LOG, json.dumps(EVENT), {"Content-Type": "application/json"})
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.mark.gunicorn
@pytest.mark.skipif(not has_ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)")
def test_real_ipv6_clients_have_a_budget_of_their_own(tmp_path):
    # Both families on one server: the IPv6 client's budget is not the IPv4 client's.
    server = GunicornServer(
        tmp_path, "--bind", "127.0.0.1:0", workers=1, host="::1", env={"FLASK_TELEMETRY_RATE_LIMIT": "3/minute"}
    )
    with server:
        ipv4_port = int(re.search(r"Listening at: \S*http://127\.0\.0\.1:(\d+)", server.stderr_text())[1])
        over_ipv6 = [_post("::1", server.port) for _ in range(4)]
        over_ipv4 = [_post("127.0.0.1", ipv4_port) for _ in range(4)]
        server.stop()

    assert over_ipv6 == [202, 202, 202, 429]
    assert over_ipv4 == [202, 202, 202, 429]
    assert len(server.event_lines()) == 6
