"""In headless Chromium: the tracker loses nothing a reader did (S12), against a live gunicorn on another origin."""

import re
from pathlib import Path

import pytest
from browser_support import (
    BLANK,
    STORED_EVENTS,
    batch_event_ids,
    launch_chromium,
    marked,
    new_context,
    new_marker,
    open_tracker,
    sync_playwright,
    tracker_page,
    wait_for_lines,
)

# Without a browser there is nothing to run: checked before any server starts.
pytestmark = [pytest.mark.gunicorn, pytest.mark.usefixtures("chromium_path")]

README = Path(__file__).resolve().parent.parent / "README.md"
TRACK = """([marker, n]) => TextbookTelemetry.track("error_event", {error_type: "Demo", marker, n})"""
FLUSH = "() => TextbookTelemetry.flush()"
# Resolves once every request the page has started is answered (or failed), in real time.
ANSWERED = "() => Promise.all([...window.inFlight])"


@pytest.fixture(scope="module")
def browser(chromium_path):
    """Chromium with its back/forward cache on, as readers have it."""
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright, chromium_path, bfcache=True)
        yield browser
        browser.close()


@pytest.fixture
def outage(api):
    """The API, for a test that stops it: it is started again, on its port, if the test left it down."""
    yield api
    if api.process.poll() is not None:
        api.start()


def line_order(api, event_ids):
    """The given event_ids in the order their lines are on the stream; each must be there once."""
    lines = [line["event_id"] for line in api.event_lines() if line["event_id"] in set(event_ids)]
    assert sorted(lines) == sorted(event_ids), lines
    return lines


def delivered_once_by_now(api, page, event_ids):
    """A last event sent after ``event_ids``: once its line is there, anything sent before it is too."""
    sentinel = new_marker()
    page.evaluate(TRACK, [sentinel, 0])
    page.evaluate(FLUSH)
    wait_for_lines(api, marked(sentinel))
    return line_order(api, event_ids)


def test_a_page_left_during_an_outage_hands_its_events_to_the_next_page(context, outage, site):
    api = outage
    marker = new_marker()
    first = context.new_page()
    open_tracker(first, tracker_page(site, api, chapter_id=f"ch-{marker}-1"))
    wait_for_lines(api, marked(f"ch-{marker}-1"))
    assert first.evaluate(STORED_EVENTS) == []  # the normal path stores nothing

    api.stop()
    tracked = [first.evaluate(TRACK, [marker, n]) for n in (1, 2)]
    first.evaluate(FLUSH)  # refused connection: kept in storage, in order
    assert [event["event_id"] for event in first.evaluate(STORED_EVENTS)] == tracked
    tracked.append(first.evaluate(TRACK, [marker, 3]))  # the API is failing: stored at once
    first.goto(site.page("blank.html", BLANK))  # left during the outage: no beacon, the queue stays

    second = context.new_page()  # another page of the origin, opened and left while the API is still down
    open_tracker(second, tracker_page(site, api, chapter_id=f"ch-{marker}-2"))
    second.goto(site.page("blank.html", BLANK))
    stored = second.evaluate(STORED_EVENTS)
    assert [event["event_id"] for event in stored[:3]] == tracked
    assert stored[3]["payload"]["chapter_id"] == f"ch-{marker}-2"
    tracked.append(stored[3]["event_id"])

    api.start()  # back, on the same port
    third = context.new_page()
    open_tracker(third, tracker_page(site, api, chapter_id=f"ch-{marker}-3"))

    wait_for_lines(api, marked(f"ch-{marker}-3"))
    assert delivered_once_by_now(api, third, tracked) == tracked  # original ids, in order, once each
    assert third.evaluate(STORED_EVENTS) == []


def test_an_api_down_for_ten_minutes_loses_nothing_while_the_page_stays_open(browser, outage, site):
    api = outage
    context = new_context(browser)
    # The page's clock is the test's: ten minutes of back-off pass in a few seconds.
    context.clock.install()
    page = context.new_page()
    # When the tracker tries (page time), and each delay it waits before the next try. The
    # clock also runs the tracker's request timeout (AbortSignal.timeout): page time moves
    # only between requests, each answer read whole before the test moves it on, or a slow
    # answer on a busy machine would time out after the API wrote its line.
    page.add_init_script("""(() => {
      const fetch = window.fetch, setTimeout = window.setTimeout;
      window.attemptTimes = [];
      window.delays = [];
      window.inFlight = new Set();
      window.fetch = function (...args) {
        window.attemptTimes.push(Date.now());
        const answer = fetch.apply(this, args).then((response) => response.arrayBuffer().then((body) =>
          new Response(body, {status: response.status, statusText: response.statusText, headers: response.headers})));
        const settled = answer.catch(() => null);
        window.inFlight.add(settled);
        settled.then(() => window.inFlight.delete(settled));
        return answer;
      };
      window.setTimeout = function (callback, delay, ...args) {
        window.delays.push(delay);
        return setTimeout.call(this, callback, delay, ...args);
      };
    })()""")
    marker = new_marker()
    open_tracker(page, tracker_page(site, api))
    try:
        api.stop()
        event_id = page.evaluate(TRACK, [marker, 1])
        page.evaluate("() => { window.delays = []; }")
        for _ in range(120):  # ten minutes, five seconds at a time
            page.clock.run_for(5000)
            page.evaluate(ANSWERED)
        assert len(page.evaluate("() => window.attemptTimes")) >= 12  # it kept trying, and never gave up
        delays = [delay / 1000 for delay in page.evaluate("() => window.delays")]
        assert delays[0] <= 1 and max(delays) <= 60, delays  # 1 s, 2 s, 4 s ... at most a minute
        assert min(delays[-5:]) >= 30, delays  # the cap, with its jitter
        assert [event["event_id"] for event in page.evaluate(STORED_EVENTS)] == [event_id]

        api.start()
        for _ in range(62):  # the next attempt comes within a minute
            page.clock.run_for(1000)
            page.evaluate(ANSWERED)
            if any(marked(marker)(line) for line in api.event_lines()):
                break
        (line,) = wait_for_lines(api, marked(marker))
        assert line["event_id"] == event_id
        page.wait_for_function(f"() => ({STORED_EVENTS})().length === 0")
    finally:
        context.close()


@pytest.mark.parametrize(
    "init_script",
    [None, "delete Navigator.prototype.locks;"],
    ids=["web-locks", "lease-without-web-locks"],
)
def test_two_tabs_never_send_the_same_stored_event_and_deliver_all(context, api, site, init_script):
    if init_script:
        context.add_init_script(init_script)
    sent = []  # every /batch request of the two tabs
    context.on("request", lambda request: sent.append(request) if request.url.endswith("/batch") else None)
    marker = new_marker()
    failing = context.new_page()
    failing.route(
        f"{api.url}/api/telemetry/batch",
        lambda route: route.fulfill(
            status=503,
            headers={"Access-Control-Allow-Origin": "*", "Retry-After": "60"},
            content_type="application/problem+json",
            body='{"status": 503}',
        ),
    )
    open_tracker(failing, tracker_page(site, api))
    # Two batches' worth, so that one tab is still sending them when the other wants to.
    tracked = failing.evaluate(
        """(marker) => Array.from({length: 150}, (_, n) => TextbookTelemetry.track(
             "error_event", {error_type: "Demo", error_message: "x".repeat(200), marker, n}))""",
        marker,
    )
    failing.wait_for_function(f"() => ({STORED_EVENTS})().length === 150")
    failing.close()
    sent.clear()

    tabs = [context.new_page(), context.new_page()]
    for tab in tabs:
        open_tracker(tab, tracker_page(site, api))
    if init_script is None:
        # Both at once: one tab holds the lock while it sends; the other waits, then finds nothing left.
        for tab in tabs:
            tab.evaluate("() => { TextbookTelemetry.flush(); }")

    # Usually a few seconds. The bound is what the design allows on a loaded machine: a
    # claim left by a tab that is slow to answer lapses after 30 s (LEASE_MS), and a tab
    # whose attempt failed waits at most a minute before the next.
    wait_for_lines(api, marked(marker), count=150, timeout=100)
    assert delivered_once_by_now(api, tabs[0], tracked) == tracked
    sent_ids = [event_id for event_id in batch_event_ids(sent) if event_id in set(tracked)]
    assert sorted(sent_ids) == sorted(tracked)  # no stored event was sent twice, by either tab
    assert all(tab.evaluate(STORED_EVENTS) == [] for tab in tabs)


def test_calls_made_through_the_readme_snippet_before_the_script_loads_run_in_order(page, api, site):
    (snippet,) = re.findall(
        r"^ *(window\.TextbookTelemetry = window\.TextbookTelemetry \|\|.*)$", README.read_text(), re.M
    )
    marker = new_marker()
    head = f"""<script>{snippet}</script>
<script>
  TextbookTelemetry.track("error_event", {{error_type: "Early", marker: "{marker}", n: 1}});
  TextbookTelemetry.setUser("u-{marker}");
  TextbookTelemetry.setChapter("ch-{marker}");
  TextbookTelemetry.track("error_event", {{error_type: "Early", marker: "{marker}", n: 2}});
  window.stub = TextbookTelemetry;
  window.loadedBefore = typeof TextbookTelemetry.isOptedOut === "function";
</script>
"""
    open_tracker(page, tracker_page(site, api, head=head))
    assert page.evaluate("() => window.loadedBefore") is False  # the calls really came first
    page.evaluate(f"""() => stub.track("error_event", {{error_type: "Kept", marker: "{marker}", n: 3}})""")
    page.evaluate(FLUSH)

    lines = wait_for_lines(api, marked(marker), count=4)
    assert [(line["event_type"], line["payload"].get("n")) for line in lines] == [
        ("error_event", 1),
        ("chapter_visit", None),
        ("error_event", 2),
        ("error_event", 3),
    ]
    assert "user_id" not in lines[0]["payload"]
    assert all(line["payload"]["user_id"] == f"u-{marker}" for line in lines[1:])


def test_readme_examples_never_throw_when_the_script_cannot_load(page, site):
    text = README.read_text()
    section = text[text.index("## From a web page") : text.index("## Using the EventLogger")]
    examples = [block for block in re.findall(r"```html\n(.*?)```", section, re.S) if "TextbookTelemetry" in block]
    assert examples
    errors = []
    page.on("pageerror", lambda error: errors.append(error))
    for example in examples:
        html = example.replace("https://api.example", "http://127.0.0.1:9")  # nothing listens there
        page.goto(site.page(f"example-{new_marker()}.html", f'<!doctype html><button id="ask">ask</button>{html}'))
        page.click("#ask")
    assert errors == []


def test_a_page_restored_from_the_back_forward_cache_is_a_visit_again(page, api, site):
    page.add_init_script("addEventListener('pageshow', (event) => { if (event.persisted) window.restored = true; })")
    marker = new_marker()
    chapter = tracker_page(site, api, chapter_id=f"ch-{marker}")
    open_tracker(page, chapter)
    wait_for_lines(api, marked(marker))

    for restores in (1, 2):
        page.goto(site.page("blank.html", BLANK))
        page.go_back(wait_until="commit")  # a restored page fires no load event
        page.wait_for_function("() => window.restored === true")  # from the cache, not loaded again
        page.evaluate("() => { window.restored = false; }")
        lines = wait_for_lines(api, marked(marker), count=1 + restores)

    assert [line["payload"]["chapter_id"] for line in lines] == [f"ch-{marker}"] * 3
    assert len({line["event_id"] for line in lines}) == 3


def test_an_event_refused_inside_an_accepted_batch_is_warned_about_once(page, api, site):
    warnings = []
    page.on("console", lambda message: warnings.append(message.text) if message.type == "warning" else None)
    open_tracker(page, tracker_page(site, api))
    marker = new_marker()

    for n in (1, 2):
        page.evaluate("""(marker) => TextbookTelemetry.track("page_view", {marker})""", marker)  # no such type: 422
        page.evaluate(TRACK, [marker, n])
        page.evaluate(FLUSH)
        wait_for_lines(api, marked(marker), count=n)

    assert [line["event_type"] for line in api.event_lines() if marked(marker)(line)] == ["error_event"] * 2
    assert warnings == ["TextbookTelemetry: the API refused 1 event(s) with status 422"]
