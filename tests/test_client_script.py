"""GET /api/telemetry/client.js: the browser tracker, served as a cacheable script."""

from pathlib import Path

import app.analytics.telemetry_router as telemetry_router

SCRIPT_URL = "/api/telemetry/client.js"


def test_tracker_is_served_as_javascript_with_validators(client):
    response = client.get(SCRIPT_URL)

    assert response.status_code == 200
    assert response.mimetype == "text/javascript"
    assert response.get_data() == Path(telemetry_router.CLIENT_SCRIPT).read_bytes()
    assert b"window.TextbookTelemetry" in response.get_data()
    assert response.headers["ETag"]
    assert response.headers["Last-Modified"]
    assert "max-age=3600" in response.headers["Cache-Control"]


def test_tracker_revalidation_answers_304(client):
    etag = client.get(SCRIPT_URL).headers["ETag"]

    response = client.get(SCRIPT_URL, headers={"If-None-Match": etag})

    assert response.status_code == 304
    assert response.get_data() == b""


def test_range_beyond_the_script_answers_416(client):
    length = len(client.get(SCRIPT_URL).get_data())

    response = client.get(SCRIPT_URL, headers={"Range": f"bytes={length}-"})

    assert response.status_code == 416
    assert response.mimetype == "application/problem+json"
    assert response.headers["Content-Range"] == f"bytes */{length}"


def test_changed_tracker_is_served_in_full(client):
    response = client.get(SCRIPT_URL, headers={"If-None-Match": '"not-the-current-version"'})

    assert response.status_code == 200
    assert response.get_data()


def test_tracker_may_be_loaded_from_any_page_origin(client):
    response = client.get(SCRIPT_URL, headers={"Origin": "http://textbook.example"})

    assert response.headers["Access-Control-Allow-Origin"] == "*"
