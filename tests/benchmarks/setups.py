"""What the benchmark measures: the apps (module and settings), the requests, and the variants made of both.

The HTTP run (gunicorn) and the instruction count (callgrind, in process)
share these, so that a figure of one can be read beside the other's. Also
what the in-process runs and the README writers share: a request's WSGI
environ, and the replacing of a marked block in the README.
"""

import io
from dataclasses import dataclass

# Far above anything a run sends: the limiter does all its work and never refuses.
UNREACHED_LIMIT = "1000000000/minute"
# Where a setting names the benchmark's own redis-server; replaced once it runs.
REDIS = "{redis}"
# An ordinary desktop Chrome, as the tracker's requests carry: the bot check
# judges it (a cached verdict) and lets it through.
BROWSER_USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
HEADERS = {"User-Agent": BROWSER_USER_AGENT, "X-User-Id": "bench-user"}
CLIENT_ADDRESS = "127.0.0.1"
BOT_USER_AGENT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"

# Production settings (SPEC S10, S11) with the limit out of reach.
PRODUCTION = {
    "TELEMETRY_RATE_LIMIT": UNREACHED_LIMIT,
    "TELEMETRY_RATE_LIMIT_STORAGE": "memory://",
    "TELEMETRY_IGNORE_BOTS": True,
    "TELEMETRY_SCRUB_VALUES": True,
}


@dataclass(frozen=True)
class App:
    """A module whose ``app`` serves, and the config it runs with (as ``FLASK_*`` variables)."""

    module: str
    settings: dict

    def environment(self, redis_url=None):
        """The settings as the ``FLASK_*`` variables a deployment sets (strings, JSON where not text)."""
        return {f"FLASK_{key}": _env_value(value, redis_url) for key, value in self.settings.items()}

    def uses_redis(self):
        return REDIS in self.settings.values()


def _env_value(value, redis_url):
    if isinstance(value, bool):
        return "true" if value else "false"
    if value == REDIS:
        if redis_url is None:
            raise RuntimeError("this app needs the benchmark's redis-server")
        return redis_url
    return str(value)


APPS = {
    "app": App("wsgi", PRODUCTION),
    "app, limiter off": App("wsgi", {**PRODUCTION, "TELEMETRY_RATE_LIMIT": "off"}),
    "app, limiter on Redis": App("wsgi", {**PRODUCTION, "TELEMETRY_RATE_LIMIT_STORAGE": REDIS}),
    "app, scrubbing off": App("wsgi", {**PRODUCTION, "TELEMETRY_SCRUB_VALUES": False}),
    "app, pseudonymous user ids": App("wsgi", {**PRODUCTION, "TELEMETRY_USER_ID_KEY": "bench-" + "k" * 40}),
    "app, metrics off": App("metrics_off", PRODUCTION),
    "app, AI blocks record nothing": App("no_ai_event", PRODUCTION),
    "minimal Flask": App("minimal_flask", {}),
}


@dataclass(frozen=True)
class Route:
    """A request: path and JSON body, the status it must get and the event lines it must write."""

    path: str
    body: dict
    status: int
    events: int


EVENT_BODY = {"event_type": "chapter_visit", "payload": {"user_id": "u-42", "chapter_id": "ch-3"}}
BATCH_EVENTS = 50
BATCH_BODY = {"events": [EVENT_BODY] * BATCH_EVENTS}
QUESTION_BODY = {"chapter_id": "ch-3", "section_id": "s-1", "question": "Why is the sky blue?"}
LOG = Route("/api/telemetry/log", EVENT_BODY, 202, 1)
BATCH = Route("/api/telemetry/batch", BATCH_BODY, 202, BATCH_EVENTS)
AI_BLOCK = Route("/api/ai/ask-question", QUESTION_BODY, 200, 1)
# The minimal app's echo route has the telemetry route's path, so every variant gets the same bytes.
ECHO = Route(LOG.path, EVENT_BODY, 200, 0)


@dataclass(frozen=True)
class Variant:
    """One thing measured: an app and the request it is sent."""

    app: str
    route: Route
    events_written: bool = True  # False where the app writes no line for the route

    @property
    def events(self):
        return self.route.events if self.events_written else 0


BATCH_NAME = f"/batch ({BATCH_EVENTS} events)"
VARIANTS = {
    "/log": Variant("app", LOG),
    "/log, limiter off": Variant("app, limiter off", LOG),
    "/log, limiter on Redis": Variant("app, limiter on Redis", LOG),
    "/log, scrubbing off": Variant("app, scrubbing off", LOG),
    "/log, pseudonymous user ids": Variant("app, pseudonymous user ids", LOG),
    "/log, metrics off": Variant("app, metrics off", LOG),
    "minimal Flask": Variant("minimal Flask", ECHO),
    BATCH_NAME: Variant("app", BATCH),
    f"{BATCH_NAME}, scrubbing off": Variant("app, scrubbing off", BATCH),
    "AI block": Variant("app", AI_BLOCK),
    "AI block, scrubbing off": Variant("app, scrubbing off", AI_BLOCK),
    "AI block, no event": Variant("app, AI blocks record nothing", AI_BLOCK, events_written=False),
}


def wsgi_environ(method, path, body, headers):
    """A JSON request from ``CLIENT_ADDRESS`` as a server hands it to ``wsgi_app``: its WSGI environ."""
    return {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": CLIENT_ADDRESS,
        "wsgi.url_scheme": "http",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        **{"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()},
    }


def write_readme_block(readme, start, end, block):
    """Put ``block`` in the file ``readme`` between the ``start`` and ``end`` markers, in place of the last one."""
    text = readme.read_text(encoding="utf-8")
    first, last = text.find(start), text.find(end)
    if first < 0 or last < first:
        raise SystemExit(f"{readme.name} has no {start!r} ... {end!r} block to write into")
    readme.write_text(text[: first + len(start)] + "\n" + block + "\n" + text[last:], encoding="utf-8")
