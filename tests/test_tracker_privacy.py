"""In headless Chromium: the tracker's opt-out, consent and Global Privacy Control (S11), against a live gunicorn."""

import pytest
from browser_support import (
    STORED_EVENTS,
    batch_event_ids,
    marked,
    new_marker,
    open_tracker,
    tracker_page,
    wait_for_lines,
)

# Without a browser there is nothing to run: checked before any server starts.
pytestmark = [pytest.mark.gunicorn, pytest.mark.usefixtures("chromium_path")]

TRACK = """(marker) => TextbookTelemetry.track("error_event", {error_type: "Demo", marker})"""
FLUSH = "() => TextbookTelemetry.flush()"
# Global Privacy Control, as a browser that sends it defines it.
GPC = "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true, configurable: true});"


@pytest.fixture
def batches(context):
    """Every /batch request the context's pages make."""
    sent = []
    context.on("request", lambda request: sent.append(request) if request.url.endswith("/batch") else None)
    return sent


def never_sent(api, page, batches, *markers):
    """Nothing carrying ``markers`` was sent, or written; call it after a later event's line arrived."""
    page.evaluate("() => 0")  # Playwright hands the test its pages' request events during its own calls
    bodies = [request.post_data for request in batches]
    assert not [body for body in bodies if any(marker in body for marker in markers)]
    assert not [line for line in api.event_lines() if any(marked(marker)(line) for marker in markers)]


def test_opt_out_is_remembered_across_pages_of_the_origin_until_opt_in(context, api, site, batches):
    marker = new_marker()
    first = context.new_page()
    open_tracker(first, tracker_page(site, api, chapter_id=f"ch-{marker}-1"))
    wait_for_lines(api, marked(f"ch-{marker}-1"))

    first.evaluate("() => TextbookTelemetry.optOut()")
    assert first.evaluate(TRACK, f"{marker}-out-1") is None
    second = context.new_page()  # another page of the origin, later
    open_tracker(second, tracker_page(site, api, chapter_id=f"ch-{marker}-2"))
    assert second.evaluate("() => TextbookTelemetry.isOptedOut()") is True
    assert second.evaluate(TRACK, f"{marker}-out-2") is None
    second.evaluate(FLUSH)

    second.evaluate("() => TextbookTelemetry.optIn()")  # the page the reader opted in on counts
    (visit,) = wait_for_lines(api, marked(f"ch-{marker}-2"))
    assert visit["event_type"] == "chapter_visit"
    assert second.evaluate("() => localStorage.getItem('TextbookTelemetry:consent')") == "in"
    never_sent(api, second, batches, f"{marker}-out-1", f"{marker}-out-2")


def test_opting_out_forgets_what_was_queued_and_stored(context, page, api, site, batches):
    page.route(
        f"{api.url}/api/telemetry/batch",
        lambda route: route.fulfill(
            status=503,
            headers={"Access-Control-Allow-Origin": "*"},
            content_type="application/problem+json",
            body='{"status": 503}',
        ),
    )
    marker = new_marker()
    open_tracker(page, tracker_page(site, api))
    page.evaluate(TRACK, f"{marker}-stored")
    page.evaluate(FLUSH)  # refused with a 503: kept in storage
    assert len(page.evaluate(STORED_EVENTS)) == 1
    page.evaluate(TRACK, f"{marker}-stored")  # the API is failing: stored at once

    page.evaluate("() => TextbookTelemetry.optOut()")

    assert page.evaluate(STORED_EVENTS) == []
    refused = len(batches)  # the attempts the API refused, all before the opt-out
    page.unroute(f"{api.url}/api/telemetry/batch")
    page.evaluate("() => TextbookTelemetry.optIn()")
    page.evaluate(TRACK, f"{marker}-later")
    page.evaluate(FLUSH)
    wait_for_lines(api, marked(f"{marker}-later"))
    never_sent(api, page, batches[refused:], f"{marker}-stored")
    assert refused >= 1 and f"{marker}-later" in batches[-1].post_data


def test_data_require_consent_sends_nothing_until_opt_in(context, api, site, batches):
    marker = new_marker()
    page = context.new_page()
    open_tracker(page, tracker_page(site, api, chapter_id=f"ch-{marker}", require_consent=True))
    assert page.evaluate("() => TextbookTelemetry.isOptedOut()") is True
    assert page.evaluate(TRACK, f"{marker}-before") is None
    page.evaluate(FLUSH)

    page.evaluate("() => TextbookTelemetry.optIn()")
    event_id = page.evaluate(TRACK, f"{marker}-after")
    page.evaluate(FLUSH)

    lines = wait_for_lines(api, marked(marker), count=2)
    assert [line["event_type"] for line in lines] == ["chapter_visit", "error_event"]
    assert lines[1]["event_id"] == event_id
    # The next page of the origin remembers the reader's consent.
    later = context.new_page()
    open_tracker(later, tracker_page(site, api, chapter_id=f"ch-{marker}-next", require_consent=True))
    wait_for_lines(api, marked(f"ch-{marker}-next"))
    never_sent(api, later, batches, f"{marker}-before")
    assert batch_event_ids(batches)[:2] == [lines[0]["event_id"], event_id]


def test_global_privacy_control_opts_out_unless_the_reader_opted_in(context, api, site, batches):
    context.add_init_script(GPC)
    marker = new_marker()
    page = context.new_page()
    open_tracker(page, tracker_page(site, api, chapter_id=f"ch-{marker}"))
    assert page.evaluate("() => navigator.globalPrivacyControl") is True
    assert page.evaluate("() => TextbookTelemetry.isOptedOut()") is True
    assert page.evaluate(TRACK, f"{marker}-gpc") is None
    page.evaluate(FLUSH)
    assert batches == []

    page.evaluate("() => TextbookTelemetry.optIn()")  # the reader's own choice outranks the browser's signal
    page.evaluate(TRACK, f"{marker}-chosen")
    page.evaluate(FLUSH)
    lines = wait_for_lines(api, marked(marker), count=2)
    assert [line["event_type"] for line in lines] == ["chapter_visit", "error_event"]

    later = context.new_page()
    open_tracker(later, tracker_page(site, api, chapter_id=f"ch-{marker}-next"))
    assert later.evaluate("() => TextbookTelemetry.isOptedOut()") is False
    wait_for_lines(api, marked(f"ch-{marker}-next"))
    never_sent(api, later, batches, f"{marker}-gpc")
