"""Which User-Agents are crawlers or automated browsers, by the crawler-user-agents list.

A page rendered by Googlebot, Lighthouse or headless Chrome runs the tracker
like a reader's browser does; its events describe no reader. The list's
patterns are many (about 1,500), so each User-Agent is judged once per app
and process and its verdict cached. The list also names a few browsers that
readers use (``READER_EXCEPTIONS``): those patterns are left out.
"""

import functools
import re

import crawleruseragents
from flask import Flask

from ..context import this_app

# Verdicts kept per app and process; browsers' User-Agents repeat, a flood of made-up ones is evicted.
VERDICT_CACHE_SIZE = 4096

# HTTP client libraries and tools: what a script or server calls the API with on
# purpose. None of them runs a page's JavaScript, so none sends a reader's events
# by accident; the list names several of them (it is also about scrapers).
DELIBERATE_CLIENTS = frozenset(
    name.lower()
    for name in (
        "curl",
        "Wget",
        "HTTPie",
        "wrk",
        "python-requests",
        "Python-urllib",
        "python-httpx",
        "Go-http-client",
        "node-fetch",
        "axios",
        "okhttp",
    )
)


# Patterns of the list that match browsers readers open the textbook in, each
# with the narrower pattern used instead (None: none) and why; tests/test_bots.py
# checks that each is still in the list and still needed.
READER_EXCEPTIONS: dict[str, str | None] = {
    # Facebook's and Instagram's in-app browser on Android ("... Mobile Safari/537.36
    # MetaIAB Facebook") is where a reader opens a chapter shared there; the list
    # calls it a preview fetcher, but Meta's fetchers call themselves
    # facebookexternalhit and meta-externalagent, and those stay bots.
    "MetaIAB Facebook": None,
    # Slack's desktop app (Electron) ends its User-Agent with "Sonic Slack_SSB/4.x":
    # a link opened there is read there. The crawlers the pattern is for
    # ("Sonic/1.0", "RankSonicSiteAuditor") stay bots; Slack's unfurler is Slackbot.
    "Sonic": r"Sonic(?! Slack_SSB)",
}

# A User-Agent is judged by its first characters only: crawlers name themselves
# early (the list's longest example, 285 characters, within its first 256).
# The rest would cost the pattern scan in proportion (an 8 KB User-Agent some
# 30 ms with the library) and decide nothing more.
JUDGED_CHARS = 256

# A pattern that is plain text once its escapes are undone ("Googlebot\/") is
# found with ``in``; the few real regular expressions are joined into one.
_ESCAPE = re.compile(r"\\([^A-Za-z0-9])")
_SPECIAL = re.compile(r"[\\\[\](){}.*+?^$|]")


class BotFilter:
    """One app's verdicts on User-Agents: True for a crawler, bot or automated browser."""

    def __init__(self) -> None:
        self.verdict = functools.lru_cache(maxsize=VERDICT_CACHE_SIZE)(_judge)

    def is_bot(self, user_agent: str) -> bool:
        """The cached verdict on ``user_agent``'s first JUDGED_CHARS characters."""
        return self.verdict(user_agent[:JUDGED_CHARS])


def _judge(user_agent: str) -> bool:
    if not user_agent:
        return False
    product = user_agent.split("/", 1)[0].strip().lower()
    if product in DELIBERATE_CLIENTS:
        return False
    texts, expression = _crawler_patterns()
    return any(text in user_agent for text in texts) or expression.search(user_agent) is not None


@functools.cache
def _crawler_patterns() -> tuple[tuple[str, ...], re.Pattern[str]]:
    """The list's patterns less READER_EXCEPTIONS: plain texts, and one expression for the rest."""
    texts, expressions = [], []
    for entry in crawleruseragents.CRAWLER_USER_AGENTS_DATA:
        pattern = READER_EXCEPTIONS.get(entry["pattern"], entry["pattern"])
        if pattern is None:
            continue
        if _SPECIAL.search(_ESCAPE.sub("", pattern)):
            expressions.append(pattern)
        else:
            texts.append(_ESCAPE.sub(r"\1", pattern))
    return tuple(texts), re.compile("|".join(expressions))


def init_app(app: Flask) -> None:
    """Judge User-Agents on the app's ingestion routes if ``TELEMETRY_IGNORE_BOTS`` (else None)."""
    if app.config["TELEMETRY_IGNORE_BOTS"]:
        # The list's patterns are sorted and compiled here, not on a reader's request.
        _crawler_patterns()
        app.extensions["bot_filter"] = BotFilter()
    else:
        app.extensions["bot_filter"] = None


def get_bot_filter() -> BotFilter | None:
    """The current app's BotFilter, or None when bots are not ignored."""
    bots: BotFilter | None = this_app().extensions["bot_filter"]
    return bots
