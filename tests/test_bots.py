"""Crawlers and automated browsers are answered but not written (SPEC S10); deliberate callers are not bots."""

import pytest
from app.analytics.bots import VERDICT_CACHE_SIZE
from prometheus_client import REGISTRY

LOG = "/api/telemetry/log"
BATCH = "/api/telemetry/batch"
EVENT = {"event_type": "chapter_visit", "payload": {"chapter_id": "ch-1"}}

BOTS = {
    "googlebot": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "googlebot-smartphone": (
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/129.0.6668.71 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    ),
    "bingbot": (
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; "
        "+http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36"
    ),
    "applebot": (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/13.1.2 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)"
    ),
    "ahrefs": "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "semrush": "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
    "gptbot": "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
    "facebook": "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "twitter": "Twitterbot/1.0",
    "slack": "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "uptimerobot": "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
    "headless-chrome": (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36"
    ),
    "phantomjs": (
        "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/538.1"
    ),
    "lighthouse": (
        "Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/132.0.0.0 Mobile Safari/537.36 Chrome-Lighthouse"
    ),
}

READERS = {
    "chrome-windows": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/156.0.0.0 Safari/537.36"
    ),
    "chrome-android": (
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/156.0.0.0 Mobile Safari/537.36"
    ),
    "firefox": "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:146.0) Gecko/20100101 Firefox/146.0",
    "firefox-android": "Mozilla/5.0 (Android 15; Mobile; rv:146.0) Gecko/146.0 Firefox/146.0",
    "safari-iphone": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 19_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/19.1 Mobile/15E148 Safari/604.1"
    ),
    "edge": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/156.0.0.0 Safari/537.36 Edg/156.0.0.0"
    ),
    "samsung-internet": (
        "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "SamsungBrowser/28.0 Chrome/130.0.0.0 Mobile Safari/537.36"
    ),
    "android-webview": (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/UQ1A.240205.004; wv) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Version/4.0 Chrome/156.0.0.0 Mobile Safari/537.36"
    ),
}

# Callers on purpose; the list names several of them, the API does not.
DELIBERATE = {
    "none": None,
    "empty": "",
    "curl": "curl/8.11.1",
    "python-requests": "python-requests/2.32.3",
    "httpie": "HTTPie/3.2.4",
    "wrk": "wrk",
    "go": "Go-http-client/1.1",
    "python-urllib": "Python-urllib/3.11",
}


def ignored_total():
    return REGISTRY.get_sample_value("telemetry_events_ignored_total", {"reason": "bot"}) or 0.0


@pytest.mark.parametrize("user_agent", BOTS.values(), ids=BOTS.keys())
def test_a_bot_is_answered_200_and_nothing_is_written(client, events, user_agent):
    before = ignored_total()

    response = client.post(LOG, json=EVENT, headers={"User-Agent": user_agent})

    assert response.status_code == 200
    assert response.get_json() == {"status": "ignored", "reason": "bot", "ignored": 1}
    assert events() == []
    assert ignored_total() - before == 1


@pytest.mark.parametrize("user_agent", [*READERS.values(), *DELIBERATE.values()], ids=[*READERS, *DELIBERATE])
def test_readers_and_deliberate_callers_are_accepted(client, events, user_agent):
    # The test client sends a User-Agent of its own unless told otherwise.
    client.environ_base.pop("HTTP_USER_AGENT")
    headers = {} if user_agent is None else {"User-Agent": user_agent}

    response = client.post(LOG, json=EVENT, headers=headers)

    assert response.status_code == 202
    assert [line["event_id"] for line in events()] == [response.get_json()["event_id"]]


def test_a_bots_batch_is_ignored_whole_and_counted_per_event(client, events):
    before = ignored_total()
    body = {"events": [EVENT, EVENT, {"event_type": "not-a-type"}]}

    response = client.post(BATCH, json=body, headers={"User-Agent": BOTS["googlebot"]})

    assert response.status_code == 200
    assert response.get_json() == {"status": "ignored", "reason": "bot", "ignored": 3}
    assert events() == []
    assert ignored_total() - before == 3


def test_a_bots_bad_body_still_gets_its_4xx(client):
    bot = {"User-Agent": BOTS["bingbot"]}

    assert client.post(LOG, data="{", content_type="application/json", headers=bot).status_code == 400
    assert client.post(LOG, data="{}", content_type="application/xml", headers=bot).status_code == 415
    assert client.post(BATCH, json={"events": []}, headers=bot).status_code == 422
    assert client.post(LOG, json={"event_type": "nope"}, headers=bot).status_code == 422


def test_a_bot_without_the_token_is_401(make_app):
    client = make_app({"TELEMETRY_INGEST_TOKEN": "s3cret"}).test_client()

    assert client.post(LOG, json=EVENT, headers={"User-Agent": BOTS["ahrefs"]}).status_code == 401


def test_bots_are_judged_before_the_rate_limit_and_spend_none_of_it(make_app):
    client = make_app({"TELEMETRY_RATE_LIMIT": "10/minute", "TELEMETRY_MAX_BATCH_EVENTS": 10}).test_client()
    bot = {"User-Agent": BOTS["semrush"]}

    assert [client.post(LOG, json=EVENT, headers=bot).status_code for _ in range(12)] == [200] * 12
    assert [client.post(LOG, json=EVENT).status_code for _ in range(11)] == [202] * 10 + [429]
    assert client.post(LOG, json=EVENT, headers=bot).status_code == 200


def test_with_ignore_bots_off_a_bot_is_accepted(make_app, read_events):
    app = make_app({"TELEMETRY_IGNORE_BOTS": "false"})

    response = app.test_client().post(LOG, json=EVENT, headers={"User-Agent": BOTS["googlebot"]})

    assert response.status_code == 202
    assert len(read_events(app)) == 1


def test_ai_blocks_answer_bots_as_anyone(client):
    response = client.post("/api/ai/quiz", json={"chapter_id": "ch-1"}, headers={"User-Agent": BOTS["googlebot"]})

    assert response.status_code == 200


def test_verdicts_are_cached_per_user_agent_and_bounded(app, client):
    bot_filter = app.extensions["bot_filter"]
    for n in range(VERDICT_CACHE_SIZE + 10):
        bot_filter.is_bot(f"Mozilla/5.0 reader-{n}")
    client.post(LOG, json=EVENT, headers={"User-Agent": READERS["firefox"]})
    hits = bot_filter.is_bot.cache_info().hits

    client.post(LOG, json=EVENT, headers={"User-Agent": READERS["firefox"]})

    assert bot_filter.is_bot.cache_info().currsize == VERDICT_CACHE_SIZE
    assert bot_filter.is_bot.cache_info().hits == hits + 1


def test_two_apps_keep_their_own_verdicts(make_app):
    first, second = make_app(), make_app()

    first.test_client().post(LOG, json=EVENT, headers={"User-Agent": READERS["edge"]})

    assert first.extensions["bot_filter"].is_bot.cache_info().currsize == 1
    assert second.extensions["bot_filter"].is_bot.cache_info().currsize == 0
