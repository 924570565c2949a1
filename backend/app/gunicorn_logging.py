"""Server log lines that name no client: no address, query, header value, e-mail or token a client sent (S11).

``ScrubbingFilter`` rewrites a record before any handler formats it: its
message and the text of its exception (and of the exceptions chained to it)
are scrubbed like a payload string; a traceback's frames are kept, so an
operator still sees what failed and where. The app's logger gets it in
``create_app``; gunicorn's error log gets it through ``ScrubbingLogger``,
named as ``logger_class`` in ``backend/gunicorn.conf.py``.
"""

import logging
import re
import traceback
from types import TracebackType
from typing import Any

from gunicorn.config import Config
from gunicorn.glogging import Logger

from .analytics.scrubbing import scrub_text

# gunicorn's warning for a request it cannot parse: the peer, then the parser's
# message, which quotes the request line or header it refused.
_INVALID_REQUEST = re.compile(r"Invalid request from ip=\S*: (?P<error>.*)", re.DOTALL)
# A parser message's description ends where the quoted request text begins.
_QUOTED_PART = re.compile(r"\s*[:'\"].*", re.DOTALL)
# gunicorn's "Error handling request <method> <uri>": the URI's query is the client's.
_REQUEST_TEMPLATES = ("Error handling request %s %s", "Error handling request %s")


class ScrubbingFilter(logging.Filter):
    """Rewrites each record so that nothing a client sent can reach a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Scrub ``record`` in place; never drops it."""
        if record.msg in _REQUEST_TEMPLATES and isinstance(record.args, tuple) and record.args:
            *method, uri = record.args
            record.args = (*method, _path_only(str(uri)))
        if isinstance(record.args, tuple):
            record.args = tuple(_safe_argument(argument) for argument in record.args)
        message = record.getMessage()
        invalid = _INVALID_REQUEST.fullmatch(message)
        if invalid:
            message = f"Invalid request: {_QUOTED_PART.sub('', invalid['error']) or 'unreadable'}"
        record.msg, record.args = scrub_text(message), None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = scrubbed_traceback(*record.exc_info)
        return True


class ScrubbingLogger(Logger):
    """gunicorn's logger with ``ScrubbingFilter`` on its error log; the access log is left as configured."""

    def setup(self, cfg: Config) -> None:
        """gunicorn's own set-up, then the filter (once, though gunicorn runs this again on reload)."""
        super().setup(cfg)
        install_filter(self.error_log)


def install_filter(logger: logging.Logger) -> None:
    """Give ``logger`` a ``ScrubbingFilter`` unless it has one."""
    if not any(isinstance(existing, ScrubbingFilter) for existing in logger.filters):
        logger.addFilter(ScrubbingFilter())


def scrubbed_traceback(
    exc_type: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
) -> str:
    """The traceback as logging formats it, each exception's text (and notes) scrubbed, its frames kept."""
    report = traceback.TracebackException(exc_type, value, tb, compact=True)  # type: ignore[arg-type]
    seen: set[int] = set()
    pending = [report]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        current._str = scrub_text(current._str)  # type: ignore[attr-defined]
        if current.__notes__:
            current.__notes__ = [scrub_text(str(note)) for note in current.__notes__]
        pending.extend(chained for chained in (current.__cause__, current.__context__) if chained is not None)
        pending.extend(current.exceptions or ())
    return "".join(report.format()).rstrip("\n")


def _path_only(uri: str) -> str:
    """A request target without its query or fragment, the path scrubbed."""
    return scrub_text(uri.split("?", 1)[0].split("#", 1)[0])


def _safe_argument(argument: Any) -> Any:
    """An exception given as a message argument is named, not quoted: its text may hold the request."""
    if isinstance(argument, BaseException):
        return type(argument).__name__
    return argument
