"""In headless Chromium: pages on one loopback origin send events to a live gunicorn on another (S8)."""

import json
import time
import uuid

import pytest
from browser_support import (
    BLANK,
    READER_USER_AGENT,
    PageServer,
    marked,
    new_marker,
    open_tracker,
    routes_answered,
    tracker_page,
    wait_for_lines,
)
from gunicorn_server import GunicornServer

# Without a browser there is nothing to run: checked before any server starts.
pytestmark = [pytest.mark.gunicorn, pytest.mark.usefixtures("chromium_path")]

# Posts a body from the page and reads the answer, as a front end would.
FETCH = """async ([url, contentType, body]) => {
  try {
    const response = await fetch(url, {method: "POST", headers: {"Content-Type": contentType}, body});
    return {status: response.status, type: response.headers.get("Content-Type"), body: await response.json()};
  } catch (error) {
    return {error: error.name, message: error.message};
  }
}"""

# Sends beacons when the page is left: one event to /log and, when given, a batch to /batch.
BEACON_PAGE = """<!doctype html><title>beacons</title>
<script>
addEventListener("pagehide", () => {{
  const send = (route, body) => navigator.sendBeacon(
    {base} + route, new Blob([JSON.stringify(body)], {{type: "text/plain"}}));
  send("/log", {event});
  const batch = {batch};
  if (batch) send("/batch", batch);
}});
</script>"""


def beacon_page(site, api, event, batch=None):
    html = BEACON_PAGE.format(
        base=json.dumps(api.url + "/api/telemetry"), event=json.dumps(event), batch=json.dumps(batch)
    )
    return site.page(f"beacon-{new_marker()}.html", html)


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """The API with its default CORS_ORIGINS, "*"."""
    with GunicornServer(tmp_path_factory.mktemp("api")) as server:
        yield server


@pytest.fixture(scope="module")
def other_site(tmp_path_factory):
    """Some other origin."""
    server = PageServer(tmp_path_factory.mktemp("other-site")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def strict_api(tmp_path_factory, site):
    """The API with an allow-list naming only ``site``'s origin."""
    env = {"FLASK_CORS_ORIGINS": site.origin}
    with GunicornServer(tmp_path_factory.mktemp("strict-api"), workers=1, env=env) as server:
        yield server


@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
def test_fetch_from_another_origin_is_accepted_and_emitted(page, api, site, content_type):
    # application/json is preflighted; text/plain is a simple request, as a beacon is.
    marker = new_marker()
    event = {"event_type": "chapter_visit", "payload": {"chapter_id": "ch-3", "marker": marker}}
    page.goto(site.page("blank.html", BLANK))

    reply = page.evaluate(FETCH, [f"{api.url}/api/telemetry/log", content_type, json.dumps(event)])

    assert reply["status"] == 202, reply
    assert reply["body"]["status"] == "accepted"
    assert page.evaluate("() => navigator.userAgent") == READER_USER_AGENT  # not HeadlessChrome: not a bot
    (line,) = wait_for_lines(api, marked(marker))
    assert line["event_id"] == reply["body"]["event_id"]
    assert line["payload"] == event["payload"]


def test_problem_is_readable_from_another_origin(page, api, site):
    page.goto(site.page("blank.html", BLANK))

    body = '{"event_type": "page_view"}'
    reply = page.evaluate(FETCH, [f"{api.url}/api/telemetry/log", "application/json", body])

    assert reply["status"] == 422, reply
    assert reply["type"] == "application/problem+json"
    assert reply["body"]["status"] == 422
    assert reply["body"]["errors"]["event_type"]


def test_beacons_sent_on_pagehide_arrive_after_the_page_is_left(page, api, site):
    marker = new_marker()
    client_id = str(uuid.uuid4())
    single = {"event_type": "chapter_visit", "payload": {"chapter_id": "ch-1", "marker": marker}}
    batch = {
        "events": [
            {"event_type": "ai_block_used", "payload": {"block_type": "quiz", "marker": marker}},
            {
                "event_type": "error_event",
                "payload": {"error_type": "TypeError", "marker": marker},
                "event_id": client_id.upper(),
            },
        ]
    }
    page.goto(beacon_page(site, api, single, batch))

    page.goto(site.page("blank.html", BLANK))

    lines = wait_for_lines(api, marked(marker), count=3)
    assert sorted(line["event_type"] for line in lines) == ["ai_block_used", "chapter_visit", "error_event"]
    (error,) = [line for line in lines if line["event_type"] == "error_event"]
    assert error["event_id"] == client_id  # the client's id, in canonical lower case


def test_tracker_reports_the_visit_tracked_events_and_errors(page, api, site):
    marker = new_marker()
    chapter, user = f"ch-{marker}", f"u-{marker}"
    open_tracker(page, tracker_page(site, api, chapter_id=chapter, user_id=user))

    event_id = page.evaluate(
        """([chapter, marker]) => TextbookTelemetry.track(
             "ai_block_used", {chapter_id: chapter, block_type: "quiz", query: null, marker})""",
        [chapter, marker],
    )
    # A lone surrogate would make the API refuse the whole batch (400): the tracker replaces it.
    page.evaluate(
        """(marker) => TextbookTelemetry.track(
             "ai_block_used", {block_type: "diagram", query: `half ${String.fromCharCode(0xd83d)}`, marker}
           )""",
        marker,
    )
    # Errors the page does not handle: a rejection (Chromium reports it after
    # pending timers, hence first), one thrown, then a loop of long ones.
    page.evaluate(
        """([chapter, marker]) => new Promise((resolve) => {
             TextbookTelemetry.setChapter(chapter);  // already visited: no second chapter_visit
             Promise.reject(new RangeError(`rejected ${marker}`));
             setTimeout(resolve, 50);
           })""",
        [chapter, marker],
    )
    page.evaluate(
        """(marker) => new Promise((resolve) => {
             setTimeout(() => { throw new TypeError(`boom ${marker}`); });
             const long = `${marker} ${"x".repeat(1000)}`;
             for (let i = 0; i < 6; i++) setTimeout(() => { throw new Error(long); });
             setTimeout(resolve, 50);
           })""",
        marker,
    )
    page.evaluate("() => TextbookTelemetry.flush()")

    lines = wait_for_lines(api, marked(marker), count=8)
    time.sleep(0.3)  # anything more would have arrived by now
    lines = [line for line in api.event_lines(while_running=True) if marked(marker)(line)]
    by_type = {}
    for line in lines:
        by_type.setdefault(line["event_type"], []).append(line)
    (visit,) = by_type["chapter_visit"]
    assert visit["payload"]["chapter_id"] == chapter
    assert visit["payload"]["user_id"] == user
    assert visit["payload"]["timestamp"].endswith("Z")
    tracked, half = by_type["ai_block_used"]
    assert tracked["event_id"] == event_id
    assert half["payload"]["query"] == "half \ufffd"
    assert tracked["payload"] == {
        "chapter_id": chapter,
        "block_type": "quiz",
        "query": None,
        "marker": marker,
        "user_id": user,
    }
    errors = by_type["error_event"]
    assert len(errors) == 5  # at most five per page, whatever the page throws
    assert {"TypeError", "RangeError"} <= {error["payload"]["error_type"] for error in errors}
    assert all(error["payload"]["chapter_id"] == chapter for error in errors)
    assert all(error["payload"]["user_id"] == user for error in errors)
    assert max(len(error["payload"]["error_message"]) for error in errors) == 500


@pytest.mark.parametrize(
    "init_script",
    [
        # Only the beacon can deliver; no randomUUID, as on a page that is not a secure context.
        "window.fetch = () => Promise.reject(new TypeError('fetch is off in this test'));"
        "delete Crypto.prototype.randomUUID;",
        # The browser will not take the beacon: the keepalive fetch delivers.
        "Navigator.prototype.sendBeacon = function () { return false; };",
    ],
    ids=["beacon", "keepalive-fetch"],
)
def test_tracker_sends_what_is_queued_when_the_page_is_left(context, api, site, init_script):
    context.add_init_script(init_script)
    # The page's timers stand still: the tracker's first attempt never comes before the
    # reader leaves, so it has no reason to think the API is failing (which would keep
    # the queue in storage instead).
    context.clock.install(time=time.time())
    context.clock.pause_at(time.time() + 1)
    page = context.new_page()
    marker = new_marker()
    open_tracker(page, tracker_page(site, api, chapter_id=f"ch-{marker}"))
    event_ids = page.evaluate(
        """(marker) => [1, 2].map(
             (n) => TextbookTelemetry.track("error_event", {error_type: "Demo", marker, n}))""",
        marker,
    )

    page.goto(site.page("blank.html", BLANK))  # before the tracker's own one-second timer

    lines = wait_for_lines(api, lambda line: marker in json.dumps(line["payload"]), count=3)
    assert sorted(line["event_type"] for line in lines) == ["chapter_visit", "error_event", "error_event"]
    assert {line["event_id"] for line in lines} >= set(event_ids)
    assert all(uuid.UUID(event_id).version == 4 for event_id in event_ids)


@pytest.mark.parametrize("status", [503, 429])
def test_tracker_retries_a_5xx_or_429_after_retry_after_and_drops_a_4xx(page, api, site, status):
    batch_url = f"{api.url}/api/telemetry/batch"
    requests = []  # (time, body) of every batch the tracker posted
    refusals = []  # the answers to give instead of the API's, in order

    def answer(route):
        requests.append((time.monotonic(), route.request.post_data))
        if not refusals:
            route.continue_()
            return
        status = refusals.pop(0)
        route.fulfill(
            status=status,
            headers={
                "Access-Control-Allow-Origin": "*",
                "Access-Control-Expose-Headers": "Retry-After",
                "Retry-After": "1",
            },
            content_type="application/problem+json",
            body=json.dumps({"type": "about:blank", "title": "Refused", "status": status, "detail": "test"}),
        )

    page.route(batch_url, answer)
    open_tracker(page, tracker_page(site, api))  # no chapter: nothing is sent until tracked
    track = """(marker) => TextbookTelemetry.track("error_event", {error_type: "Demo", marker})"""

    refusals.append(status)  # S10: a 429 is waited out like a 503, never a reason to drop
    retried = new_marker()
    retried_id = page.evaluate(track, retried)
    page.evaluate("() => TextbookTelemetry.flush()")
    (line,) = wait_for_lines(api, marked(retried), pause=routes_answered(page))
    assert line["event_id"] == retried_id
    (first, _), (second, _) = [(at, body) for at, body in requests if retried_id in body]
    assert second - first >= 0.9  # Retry-After: 1

    refusals.append(422)
    dropped, delivered = new_marker(), new_marker()
    dropped_id = page.evaluate(track, dropped)
    page.evaluate("() => TextbookTelemetry.flush()")
    page.evaluate(track, delivered)
    page.evaluate("() => TextbookTelemetry.flush()")
    wait_for_lines(api, marked(delivered), pause=routes_answered(page))
    assert sum(dropped_id in body for _, body in requests) == 1
    assert not [line for line in api.event_lines(while_running=True) if marked(dropped)(line)]


def _batch_bodies(page, api):
    """The bodies the page posts to /batch, in order, as they go."""
    bodies = []

    def forward(route):
        bodies.append(route.request.post_data)
        route.continue_()

    page.route(f"{api.url}/api/telemetry/batch", forward)
    return bodies


def test_tracker_splits_a_long_queue_into_batches_the_api_takes(page, api, site):
    bodies = _batch_bodies(page, api)
    open_tracker(page, tracker_page(site, api))
    marker = new_marker()

    event_ids = page.evaluate(
        """(marker) => Array.from({length: 150}, (_, n) => TextbookTelemetry.track(
             "error_event", {error_type: "Demo", error_message: "x".repeat(1000), marker, n}))""",
        marker,
    )

    lines = wait_for_lines(api, marked(marker), count=150, pause=routes_answered(page))
    assert sorted(line["event_id"] for line in lines) == sorted(event_ids)
    batches = [json.loads(body)["events"] for body in bodies]
    assert len(batches) >= 3  # 150 events of over 1 KB: too many and too large for one
    assert all(len(batch) <= 100 and len(body.encode()) <= 60_000 for batch, body in zip(batches, bodies, strict=True))


def _items(value):
    """Array elements and object members, as JSON_MAX_ITEMS counts them (an empty one counts one)."""
    if isinstance(value, (list, dict)):
        return max(1, len(value)) + sum(_items(item) for item in (value if isinstance(value, list) else value.values()))
    return 0


def test_tracker_splits_a_queue_of_many_values_into_batches_the_api_takes(page, api, site):
    bodies = _batch_bodies(page, api)
    open_tracker(page, tracker_page(site, api))
    marker = new_marker()

    # Small in bytes, but 12 events of 400 values are more than one body may hold (JSON_MAX_ITEMS, 2048).
    event_ids = page.evaluate(
        """(marker) => Array.from({length: 12}, (_, n) => TextbookTelemetry.track(
             "error_event", {error_type: "Demo", scores: Array(400).fill(n), marker}))""",
        marker,
    )

    lines = wait_for_lines(api, marked(marker), count=12, pause=routes_answered(page))
    assert sorted(line["event_id"] for line in lines) == sorted(event_ids)
    assert len(bodies) >= 3
    assert all(_items(json.loads(body)) <= 2048 for body in bodies)


def test_allow_list_lets_the_listed_origin_in_and_keeps_others_out(context, strict_api, site, other_site):
    log_url = f"{strict_api.url}/api/telemetry/log"
    allowed, refused = context.new_page(), context.new_page()
    allowed.goto(site.page("blank.html", BLANK))
    refused.goto(other_site.page("blank.html", BLANK))
    console = []
    refused.on("console", lambda message: console.append(message.text))

    def event(marker):
        return {"event_type": "chapter_visit", "payload": {"chapter_id": "ch-1", "marker": marker}}

    fetched, not_fetched = new_marker(), new_marker()
    reply = allowed.evaluate(FETCH, [log_url, "text/plain", json.dumps(event(fetched))])
    failure = refused.evaluate(FETCH, [log_url, "text/plain", json.dumps(event(not_fetched))])

    assert reply["status"] == 202, reply
    assert failure["error"] == "TypeError", failure  # the browser hides the 403: a CORS error
    assert any("CORS policy" in text for text in console), console

    beaconed, not_beaconed = new_marker(), new_marker()
    refused.goto(beacon_page(other_site, strict_api, event(not_beaconed)))
    allowed.goto(beacon_page(site, strict_api, event(beaconed)))
    refused.goto(other_site.page("blank.html", BLANK))
    allowed.goto(site.page("blank.html", BLANK))

    wait_for_lines(strict_api, marked(fetched))
    wait_for_lines(strict_api, marked(beaconed))
    time.sleep(0.3)  # the refused beacon left first; give it time all the same
    assert not [
        line
        for line in strict_api.event_lines(while_running=True)
        if marked(not_fetched)(line) or marked(not_beaconed)(line)
    ]
