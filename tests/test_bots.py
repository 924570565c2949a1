"""Crawlers and automated browsers are answered but not written (SPEC S10); deliberate callers are not bots."""

import crawleruseragents
import pytest
from app.analytics.bots import DELIBERATE_CLIENTS, JUDGED_CHARS, READER_EXCEPTIONS, VERDICT_CACHE_SIZE, BotFilter
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
    hits = bot_filter.verdict.cache_info().hits

    client.post(LOG, json=EVENT, headers={"User-Agent": READERS["firefox"]})

    assert bot_filter.verdict.cache_info().currsize == VERDICT_CACHE_SIZE
    assert bot_filter.verdict.cache_info().hits == hits + 1


def test_two_apps_keep_their_own_verdicts(make_app):
    first, second = make_app(), make_app()

    first.test_client().post(LOG, json=EVENT, headers={"User-Agent": READERS["edge"]})

    assert first.extensions["bot_filter"].verdict.cache_info().currsize == 1
    assert second.extensions["bot_filter"].verdict.cache_info().currsize == 0


# Where readers open a shared chapter: in-app browsers, Chromebooks, school-managed and exam
# browsers, phones. All are readers; the crawler list named two of them (READER_EXCEPTIONS).
READERS_ELSEWHERE = {
    "facebook-ios": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Mobile/15E148 "
        "[FBAN/FBIOS;FBAV/442.0.0.36.111;FBBV/545390480;FBDV/iPhone14,5;FBMD/iPhone;FBSN/iOS;FBSV/17.1;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5;FBRV/547215011]"
    ),
    "facebook-android": (
        "Mozilla/5.0 (Linux; Android 14; SM-S918B Build/UP1A.231005.007; wv) AppleWebKit/537.36 (KHTML, "
        "like Gecko) Version/4.0 Chrome/120.0.6099.144 Mobile Safari/537.36 "
        "[FB_IAB/FB4A;FBAV/445.0.0.34.118;]"
    ),
    "facebook-metaiab": (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/AP1A.240405.002; wv) AppleWebKit/537.36 (KHTML, "
        "like Gecko) Version/4.0 Chrome/124.0.6367.82 Mobile Safari/537.36 MetaIAB Facebook"
    ),
    "messenger-android": (
        "Mozilla/5.0 (Linux; Android 13; SM-A546B Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, "
        "like Gecko) Version/4.0 Chrome/121.0.6167.143 Mobile Safari/537.36 "
        "[FB_IAB/Orca-Android;FBAV/443.0.0.21.118;]"
    ),
    "instagram-ios": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Mobile/15E148 Instagram 326.0.3.26.91 (iPhone15,2; iOS 17_4; en_US; en; scale=3.00; 1179x2556; "
        "585263370)"
    ),
    "instagram-android": (
        "Mozilla/5.0 (Linux; Android 13; SM-A536B Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, "
        "like Gecko) Version/4.0 Chrome/122.0.6261.105 Mobile Safari/537.36 Instagram 322.0.0.40.96 "
        "Android (33/13; 450dpi; 1080x2177; samsung; SM-A536B; a53x; s5e8825; en_GB; 578036347)"
    ),
    "instagram-metaiab": (
        "Mozilla/5.0 (Linux; Android 14; SM-S911B Build/UP1A.231005.007; wv) AppleWebKit/537.36 (KHTML, "
        "like Gecko) Version/4.0 Chrome/125.0.6422.53 Mobile Safari/537.36 MetaIAB Instagram"
    ),
    "tiktok-ios": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Mobile/15E148 musical_ly_33.4.0 JsSdk/2.0 NetType/WIFI Channel/App Store ByteLocale/en "
        "Region/US ByteFullLocale/en-US isDarkMode/0 WKWebView/1 BytedanceWebview/d8a21c6"
    ),
    "tiktok-android": (
        "Mozilla/5.0 (Linux; Android 12; SM-G991B Build/SP1A.210812.016; wv) AppleWebKit/537.36 (KHTML, "
        "like Gecko) Version/4.0 Chrome/120.0.6099.230 Mobile Safari/537.36 trill_330204 JsSdk/1.0 "
        "NetType/WIFI Channel/googleplay AppName/trill app_version/33.2.4 ByteLocale/en "
        "ByteFullLocale/en Region/GB AppId/1180 Spark/1.5.0.4-bugfix AppVersion/33.2.4 "
        "BytedanceWebview/d8a21c6"
    ),
    "wechat-ios": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Mobile/15E148 MicroMessenger/8.0.42(0x18002a2f) NetType/WIFI Language/zh_CN"
    ),
    "wechat-android": (
        "Mozilla/5.0 (Linux; Android 13; V2154A Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, "
        "like Gecko) Version/4.0 Chrome/111.0.5563.116 Mobile Safari/537.36 XWEB/1110005 "
        "MMWEBSDK/20230805 MMWEBID/2564 MicroMessenger/8.0.42.2460(0x28002A35) WeChat/arm64 Weixin "
        "NetType/WIFI Language/zh_CN ABI/arm64"
    ),
    "line-ios": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Mobile/15E148 Safari Line/13.21.0"
    ),
    "line-android": (
        "Mozilla/5.0 (Linux; Android 13; SC-51C Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, "
        "like Gecko) Version/4.0 Chrome/120.0.6099.210 Mobile Safari/537.36 Line/13.20.1/IAB"
    ),
    "snapchat-ios": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Mobile/15E148 Snapchat/12.60.0.42 (like Safari/8617.1.17.10.9, panda)"
    ),
    "snapchat-android": (
        "Mozilla/5.0 (Linux; Android 14; Pixel 7 Build/UQ1A.240205.002; wv) AppleWebKit/537.36 (KHTML, "
        "like Gecko) Version/4.0 Chrome/121.0.6167.178 Mobile Safari/537.36 Snapchat/12.73.0.39 (like "
        "Chrome/121.0.6167.178)"
    ),
    "slack-desktop-mac": (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Slack/4.36.140 Chrome/120.0.6099.291 Electron/28.2.5 Safari/537.36 Sonic Slack_SSB/4.36.140"
    ),
    "slack-desktop-windows": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Slack/4.41.105 "
        "Chrome/130.0.6723.118 Electron/33.2.0 Safari/537.36 Sonic Slack_SSB/4.41.105"
    ),
    "linkedin-ios": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Mobile/15E148 [LinkedInApp]/9.29.8962"
    ),
    "pinterest-ios": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Mobile/15E148 [Pinterest/iOS]"
    ),
    "google-app-ios": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "GSA/311.0.621065904 Mobile/15E148 Safari/604.1"
    ),
    "teams-desktop": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0 Teams/24004.1307.2669.7070/49"
    ),
    "discord-desktop": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "discord/1.0.9032 Chrome/120.0.6099.291 Electron/28.2.10 Safari/537.36"
    ),
    "whatsapp-ios-iab": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4 Mobile/15E148 Safari/604.1"
    ),
    "chromebook-x86": (
        "Mozilla/5.0 (X11; CrOS x86_64 15633.69.0) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/119.0.6045.212 Safari/537.36"
    ),
    "chromebook-arm": (
        "Mozilla/5.0 (X11; CrOS aarch64 15662.76.0) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.6099.235 Safari/537.36"
    ),
    "chromebook-armv7": (
        "Mozilla/5.0 (X11; CrOS armv7l 13597.84.0) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/92.0.4515.130 Safari/537.36"
    ),
    "safe-exam-browser": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/114.0.0.0 Safari/537.36 SEB/3.5.0 (x64)"
    ),
    "respondus-lockdown": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/118.0.0.0 Safari/537.36 LockDownBrowser/2.1.1.05"
    ),
    "ipad-managed-safari": (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4 Safari/605.1.15"
    ),
    "iphone-safari": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
        "Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1"
    ),
    "android-chrome": (
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
        "Mobile Safari/537.36"
    ),
    "samsung-internet": (
        "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36"
    ),
    "firefox-android": "Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0",
    "edge-android": (
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
        "Mobile Safari/537.36 EdgA/124.0.2478.64"
    ),
    "opera-mini": "Opera/9.80 (Android; Opera Mini/76.0.2254/191.303; U; en) Presto/2.12.423 Version/12.16",
    "ucbrowser": (
        "Mozilla/5.0 (Linux; U; Android 13; en-US; RMX3630 Build/TP1A.220905.001) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Version/4.0 Chrome/100.0.4896.58 UCBrowser/13.6.8.1318 Mobile Safari/537.36"
    ),
    "kindle-silk": (
        "Mozilla/5.0 (Linux; Android 9; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/124.2.1 like "
        "Chrome/124.0.6367.179 Safari/537.36"
    ),
}

# The same companies' link previewers and crawlers stay bots.
LINK_PREVIEWS_AND_CRAWLERS = {
    "facebook-preview": "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "meta-crawler": "meta-externalagent/1.1 (+https://developers.facebook.com/docs/sharing/webmasters/crawler)",
    "slack-unfurl": "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "slack-bot": "Slackbot 1.0 (+https://api.slack.com/robots)",
    "twitter-preview": "Twitterbot/1.0",
    "telegram-preview": "TelegramBot (like TwitterBot)",
    "whatsapp-preview": "WhatsApp/2.23.20.0 A",
    "discord-preview": "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
    "linkedin-preview": "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
    "pinterest-crawler": "Mozilla/5.0 (compatible; Pinterestbot/1.0; +http://www.pinterest.com/bot.html)",
    "googlebot": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "google-inspection": (
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like "
        "Gecko) Chrome/124.0.6367.201 Mobile Safari/537.36 (compatible; Google-InspectionTool/1.0)"
    ),
    "headless-chrome": (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.0.0 Safari/537.36"
    ),
    "lighthouse": (
        "Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/119.0.0.0 Mobile Safari/537.36 Chrome-Lighthouse"
    ),
    "bytespider": (
        "Mozilla/5.0 (Linux; Android 5.0) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36 "
        "(compatible; Bytespider; spider-feedback@bytedance.com)"
    ),
    "line-preview": "facebookexternalhit/1.1;line-poker/1.0",
    "wechat-crawler": "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
}


@pytest.mark.parametrize("user_agent", READERS_ELSEWHERE.values(), ids=READERS_ELSEWHERE.keys())
def test_readers_in_in_app_school_and_phone_browsers_are_recorded(client, events, user_agent):
    response = client.post(LOG, json=EVENT, headers={"User-Agent": user_agent})

    assert response.status_code == 202
    assert len(events()) == 1


@pytest.mark.parametrize("user_agent", LINK_PREVIEWS_AND_CRAWLERS.values(), ids=LINK_PREVIEWS_AND_CRAWLERS.keys())
def test_link_previewers_and_crawlers_stay_bots(user_agent):
    assert BotFilter().is_bot(user_agent)


@pytest.mark.parametrize("pattern", READER_EXCEPTIONS)
def test_each_exception_is_in_the_list_and_still_needed(pattern):
    # When the list drops or narrows a pattern, its exception goes too.
    listed = [entry["pattern"] for entry in crawleruseragents.CRAWLER_USER_AGENTS_DATA]
    matched = [ua for ua in READERS_ELSEWHERE.values() if crawleruseragents.is_crawler(ua) and pattern in ua]

    assert pattern in listed
    assert matched
    assert not any(BotFilter().is_bot(ua) for ua in matched)


def _listed_user_agents():
    """The list's own examples of each pattern, and one made from each plain-text pattern."""
    for entry in crawleruseragents.CRAWLER_USER_AGENTS_DATA:
        yield from entry.get("instances", [])
        yield "Mozilla/5.0 " + entry["pattern"].replace("\\", "")


def test_verdicts_agree_with_the_list_but_for_readers():
    judge = BotFilter()
    samples = [*BOTS.values(), *READERS.values(), *READERS_ELSEWHERE.values(), *LINK_PREVIEWS_AND_CRAWLERS.values()]
    samples += [
        agent for agent in _listed_user_agents() if agent.split("/", 1)[0].strip().lower() not in DELIBERATE_CLIENTS
    ]

    disagree = [agent for agent in samples if judge.is_bot(agent) != crawleruseragents.is_crawler(agent)]

    assert len(samples) > 2000
    # Only the readers' browsers the exceptions are for.
    assert sorted(set(disagree)) == sorted(
        {agent for agent in samples if "MetaIAB Facebook" in agent or "Sonic Slack_SSB" in agent}
    )


def test_a_long_user_agent_is_judged_by_its_start(app):
    bot_filter = app.extensions["bot_filter"]
    reader = READERS["firefox"]

    assert bot_filter.is_bot(BOTS["googlebot"] + " " + "x" * 8000)
    assert not bot_filter.is_bot(reader.ljust(JUDGED_CHARS) + "Googlebot/2.1")
    # Unique long ones share the verdict of their start: the cache holds no 8 KB keys.
    for n in range(10):
        assert not bot_filter.is_bot(reader.ljust(JUDGED_CHARS) + str(n) * 8000)
    assert bot_filter.verdict.cache_info().currsize == 2
