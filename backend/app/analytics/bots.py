"""Which User-Agents are crawlers or automated browsers, by the crawler-user-agents list.

A page rendered by Googlebot, Lighthouse or headless Chrome runs the tracker
like a reader's browser does; its events describe no reader. The list's
patterns are many (about 1,500), so each User-Agent is judged once per app
and process and its verdict cached.
"""

import functools

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


class BotFilter:
    """One app's verdicts on User-Agents: True for a crawler, bot or automated browser."""

    def __init__(self) -> None:
        self.is_bot = functools.lru_cache(maxsize=VERDICT_CACHE_SIZE)(_judge)


def _judge(user_agent: str) -> bool:
    if not user_agent:
        return False
    product = user_agent.split("/", 1)[0].strip().lower()
    if product in DELIBERATE_CLIENTS:
        return False
    return bool(crawleruseragents.is_crawler(user_agent))


def init_app(app: Flask) -> None:
    """Judge User-Agents on the app's ingestion routes if ``TELEMETRY_IGNORE_BOTS`` (else None)."""
    if app.config["TELEMETRY_IGNORE_BOTS"]:
        # The list's regular expressions are compiled on first use: here, not on a reader's request.
        _judge("Mozilla/5.0")
        app.extensions["bot_filter"] = BotFilter()
    else:
        app.extensions["bot_filter"] = None


def get_bot_filter() -> BotFilter | None:
    """The current app's BotFilter, or None when bots are not ignored."""
    bots: BotFilter | None = this_app().extensions["bot_filter"]
    return bots
