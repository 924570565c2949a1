"""CORS on every /api answer, and the allow-list that keeps other origins' POSTs out."""

import pytest
from app.config import ConfigError

LOG = "/api/telemetry/log"
BATCH = "/api/telemetry/batch"
VISIT = {"event_type": "chapter_visit", "payload": {"chapter_id": "ch-1"}}
PAGE = "https://textbook.example.org"
OTHER = "https://elsewhere.example.net"


def preflight(client, path, method="POST", headers="content-type", origin=PAGE):
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
    )


@pytest.fixture
def listed_app(make_app):
    return make_app({"CORS_ORIGINS": [PAGE, "http://127.0.0.1:8080"]})


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", LOG, VISIT, 202),
        ("POST", BATCH, {"events": [VISIT]}, 202),
        ("GET", "/api/telemetry/health", None, 200),
        ("GET", "/api/telemetry/client.js", None, 200),
        ("GET", "/api/openapi.json", None, 200),
        ("POST", "/api/ai/quiz", {"chapter_id": "c"}, 200),
        ("POST", LOG, {"event_type": "page_view"}, 422),
        ("POST", "/api/ai/quiz", {"chapter_id": ""}, 422),
        ("GET", LOG, None, 405),
        ("GET", "/api/no-such-route", None, 404),
    ],
)
def test_every_api_answer_allows_any_origin_by_default(client, method, path, body, status):
    response = client.open(path, method=method, json=body, headers={"Origin": PAGE})

    assert response.status_code == status
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert response.headers["Access-Control-Expose-Headers"] == "Retry-After"


def test_problems_of_a_refused_sink_carry_cors_headers(app, client):
    with app.app_context():
        app.extensions["event_logger"].shutdown()

    response = client.post(LOG, json=VISIT, headers={"Origin": PAGE})

    assert response.status_code == 503
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_a_500_carries_cors_headers(make_app):
    app = make_app()

    @app.get("/api/boom")
    def boom():
        raise RuntimeError("boom")

    response = app.test_client().get("/api/boom", headers={"Origin": PAGE})

    assert response.status_code == 500
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_request_without_origin_still_allows_any_origin_by_default(client):
    response = client.post(LOG, json=VISIT)

    assert response.status_code == 202
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_metrics_and_other_paths_outside_api_get_no_cors_headers(make_app):
    app = make_app()

    @app.get("/private")
    def private():
        return "private"

    response = app.test_client().get("/private", headers={"Origin": PAGE})

    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize(
    ("path", "methods"),
    [(LOG, "POST"), (BATCH, "POST"), ("/api/ai/ask-question", "POST"), ("/api/telemetry/health", "GET")],
)
def test_preflight_is_answered_with_the_routes_own_methods(client, events, path, methods):
    response = preflight(client, path, method=methods, headers="content-type, authorization, x-user-id")

    assert 200 <= response.status_code < 300
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["Access-Control-Allow-Methods"] == methods
    allowed = {name.strip().lower() for name in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert allowed == {"content-type", "authorization", "x-user-id"}
    assert int(response.headers["Access-Control-Max-Age"]) > 0
    assert events() == []


def test_preflight_allows_no_header_the_api_does_not_read(client):
    response = preflight(client, LOG, headers="content-type, x-debug")

    assert response.headers["Access-Control-Allow-Headers"] == "content-type"


@pytest.mark.parametrize(("path", "method"), [(LOG, "DELETE"), ("/api/telemetry/health", "POST")])
def test_preflight_for_a_method_the_route_does_not_serve_allows_nothing(client, path, method):
    response = preflight(client, path, method=method)

    assert "Access-Control-Allow-Methods" not in response.headers


def test_preflight_never_reaches_the_view_or_emits(make_app, read_events):
    app = make_app({"TELEMETRY_INGEST_TOKEN": "t0ken"})

    # No token and no body: a view would refuse it with 401.
    response = preflight(app.test_client(), LOG, headers="content-type, authorization")

    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Methods"] == "POST"
    assert read_events(app) == []


def test_listed_origin_is_echoed_with_vary(listed_app, read_events):
    response = listed_app.test_client().post(LOG, json=VISIT, headers={"Origin": PAGE})

    assert response.status_code == 202
    assert response.headers["Access-Control-Allow-Origin"] == PAGE
    assert [value.strip() for header in response.headers.getlist("Vary") for value in header.split(",")] == ["Origin"]
    assert len(read_events(listed_app)) == 1


def test_single_listed_origin_still_varies_on_origin(make_app):
    app = make_app({"CORS_ORIGINS": PAGE})

    response = app.test_client().get("/api/telemetry/health", headers={"Origin": PAGE})

    assert response.headers["Access-Control-Allow-Origin"] == PAGE
    assert "Origin" in response.vary


@pytest.mark.parametrize(
    ("path", "body", "content_type"),
    [
        (LOG, b'{"event_type": "chapter_visit"}', "application/json"),
        (LOG, b'{"event_type": "chapter_visit"}', "text/plain;charset=UTF-8"),
        (BATCH, b'{"events": [{"event_type": "chapter_visit"}]}', "text/plain;charset=UTF-8"),
        ("/api/ai/quiz", b'{"chapter_id": "c"}', "application/json"),
    ],
)
@pytest.mark.parametrize("origin", [OTHER, "null", PAGE + ".evil.test"])
def test_post_from_an_unlisted_origin_is_403_and_emits_nothing(
    listed_app, read_events, path, body, content_type, origin
):
    # A beacon or a text/plain fetch is sent without a preflight: CORS alone would let it in.
    response = listed_app.test_client().post(path, data=body, content_type=content_type, headers={"Origin": origin})

    assert response.status_code == 403
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["status"] == 403
    assert "Access-Control-Allow-Origin" not in response.headers
    assert read_events(listed_app) == []


def test_post_without_origin_is_judged_as_before(listed_app, read_events):
    response = listed_app.test_client().post(LOG, json=VISIT)

    assert response.status_code == 202
    # flask-cors' always_send would name the first listed origin here.
    assert not [name for name in response.headers.keys() if name.startswith("Access-Control-")]
    assert "Origin" in response.vary
    assert len(read_events(listed_app)) == 1


def test_origin_is_compared_without_case(listed_app, read_events):
    response = listed_app.test_client().post(LOG, json=VISIT, headers={"Origin": "HTTPS://Textbook.Example.org"})

    assert response.status_code == 202
    assert response.headers["Access-Control-Allow-Origin"] == "HTTPS://Textbook.Example.org"


@pytest.mark.parametrize(
    "origin",
    [PAGE, PAGE.upper(), PAGE + "/", PAGE + ":443", "http://127.0.0.1:8080", "http://127.0.0.1:8080/", OTHER, "null"],
)
def test_a_post_is_refused_exactly_when_its_origin_gets_no_cors_headers(listed_app, origin):
    response = listed_app.test_client().post("/api/ai/quiz", json={"chapter_id": "c"}, headers={"Origin": origin})

    assert response.status_code in (200, 403)
    assert (response.status_code == 403) is ("Access-Control-Allow-Origin" not in response.headers)
    # Browsers send neither a trailing slash nor a scheme's default port: such an Origin is no listed one.
    assert (response.status_code == 200) is (origin in (PAGE, PAGE.upper(), "http://127.0.0.1:8080"))


def test_null_origin_is_refused_unless_listed(make_app):
    # Pages opened from file:// (and sandboxed frames) send "Origin: null".
    listed = make_app({"CORS_ORIGINS": [PAGE, "null"]}).test_client()
    unlisted = make_app({"CORS_ORIGINS": [PAGE]}).test_client()

    assert listed.post(LOG, json=VISIT, headers={"Origin": "null"}).headers["Access-Control-Allow-Origin"] == "null"
    assert unlisted.post(LOG, json=VISIT, headers={"Origin": "null"}).status_code == 403


def test_unlisted_origin_may_still_read_health_without_cors_headers(listed_app):
    response = listed_app.test_client().get("/api/telemetry/health", headers={"Origin": OTHER})

    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers


def test_preflight_from_an_unlisted_origin_is_not_allowed(listed_app):
    response = preflight(listed_app.test_client(), LOG, origin=OTHER)

    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("*", "*"),
        (["*"], "*"),
        ("https://a.example, https://b.example:8443", ["https://a.example", "https://b.example:8443"]),
        ("https://a.example https://b.example/", ["https://a.example", "https://b.example"]),
        (["HTTPS://A.example"], ["https://a.example"]),
        # Browsers leave a scheme's default port out of Origin.
        ("https://a.example:443 http://b.example:80", ["https://a.example", "http://b.example"]),
        ("http://a.example:443", ["http://a.example:443"]),
    ],
)
def test_origins_setting_accepts_a_list_or_a_separated_string(make_app, value, expected):
    assert make_app({"CORS_ORIGINS": value}).config["CORS_ORIGINS"] == expected


def test_origins_come_from_the_environment(make_app, monkeypatch):
    monkeypatch.setenv("FLASK_CORS_ORIGINS", '["https://a.example", "https://b.example"]')

    assert make_app().config["CORS_ORIGINS"] == ["https://a.example", "https://b.example"]


@pytest.mark.parametrize(
    "value", ["", [], "https://a.example/path", "a.example", "https://*.example", "https://a.example?x=1", [7], None]
)
def test_bad_origins_stop_startup(make_app, value):
    with pytest.raises(ConfigError, match="CORS_ORIGINS"):
        make_app({"CORS_ORIGINS": value})
