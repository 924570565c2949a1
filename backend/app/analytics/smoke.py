"""Smoke checks: every route called once through the test client, leaving no trace.

``flask telemetry smoke`` runs the checks in a process of their own
(``python -m app.analytics.smoke``), on an app made by the factory with the
settings of the app being checked, except two: its events go to a temporary
file, read back to check that each accepted event is on it once, then
removed; and it runs without ``PROMETHEUS_MULTIPROC_DIR``, so its counts stay
in that process's own registry, which ends with it. The real event stream
and the server's metrics never see a smoke event, whatever the environment.
"""

import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

SMOKE_USER = "smoke-test"
_PROBLEM = "application/problem+json"
# Long enough for a loaded machine to start Python and the app; a smoke check answers in milliseconds.
SMOKE_TIMEOUT = 60
# What the checks' process must not inherit: the metrics directory, and settings passed explicitly instead.
_ISOLATED_ENVIRONMENT = ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")
# The checks' process exits with this when a check failed; any other non-zero status is a crash.
CHECKS_FAILED = 3


@dataclass(frozen=True)
class SmokeCheck:
    """One request, the answer it must get, and the event type it writes when it passes."""

    method: str
    path: str
    status: int
    body: dict[str, Any] | None = None
    mimetype: str = "application/json"
    expect_key: str | None = None
    emits: str | None = None

    def run(self, client: FlaskClient, headers: Mapping[str, str]) -> "SmokeResult":
        response = client.open(self.path, method=self.method, json=self.body, headers=headers)
        problems = []
        if response.status_code != self.status:
            problems.append(f"status {response.status_code}")
        if response.mimetype != self.mimetype:
            problems.append(f"content type {response.mimetype}")
        reply = response.get_json(silent=True) or {}
        if self.expect_key and self.expect_key not in reply:
            problems.append(f"no {self.expect_key!r} in the body")
        return SmokeResult(self, response.status_code, "; ".join(problems), _event_ids(reply))


def _event_ids(reply: Any) -> tuple[str, ...]:
    """The ids of the events an answer says it accepted: ``/log``'s, or those of a batch's results."""
    if not isinstance(reply, dict):
        return ()
    if isinstance(reply.get("results"), list):
        return tuple(result["event_id"] for result in reply["results"] if result.get("status") == 202)
    return (reply["event_id"],) if reply.get("status") == "accepted" and "event_id" in reply else ()


@dataclass(frozen=True)
class SmokeResult:
    check: SmokeCheck
    got: int
    problem: str
    event_ids: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.problem

    def line(self) -> str:
        verdict = "ok  " if self.passed else "FAIL"
        check = self.check
        text = f"{verdict} {check.method:<4} {check.path} -> {self.got} (want {check.status})"
        return text if self.passed else f"{text}: {self.problem}"


_CHAPTER = {"chapter_id": "smoke-chapter", "section_id": "smoke-section"}

SMOKE_CHECKS = (
    SmokeCheck("GET", "/api/telemetry/health", 200, expect_key="events_logged"),
    SmokeCheck(
        "POST",
        "/api/telemetry/log",
        202,
        {"event_type": "chapter_visit", "payload": {"user_id": SMOKE_USER, "chapter_id": "smoke-chapter"}},
        expect_key="event_id",
        emits="chapter_visit",
    ),
    SmokeCheck("POST", "/api/telemetry/log", 422, {"event_type": "no_such_event"}, _PROBLEM, "errors"),
    SmokeCheck(
        "POST",
        "/api/telemetry/batch",
        202,
        {"events": [{"event_type": "error_event", "payload": {"error_type": "SmokeTest"}}]},
        expect_key="results",
        emits="error_event",
    ),
    SmokeCheck("GET", "/api/telemetry/client.js", 200, mimetype="text/javascript"),
    SmokeCheck("GET", "/api/telemetry/live", 200, expect_key="status"),
    SmokeCheck("GET", "/api/telemetry/ready", 200, expect_key="status"),
    SmokeCheck("GET", "/api/telemetry/event-schema.json", 200, mimetype="application/schema+json"),
    SmokeCheck(
        "POST",
        "/api/ai/ask-question",
        200,
        {**_CHAPTER, "question": "Why?"},
        expect_key="answer",
        emits="ai_block_used",
    ),
    SmokeCheck("POST", "/api/ai/ask-question", 422, {"chapter_id": ""}, _PROBLEM, "errors"),
    SmokeCheck(
        "POST",
        "/api/ai/explain-like-10",
        200,
        {**_CHAPTER, "concept": "gravity"},
        expect_key="explanation",
        emits="ai_block_used",
    ),
    SmokeCheck(
        "POST", "/api/ai/quiz", 200, {**_CHAPTER, "num_questions": 2}, expect_key="questions", emits="ai_block_used"
    ),
    SmokeCheck(
        "POST",
        "/api/ai/diagram",
        200,
        {**_CHAPTER, "description": "a cycle"},
        expect_key="diagram",
        emits="ai_block_used",
    ),
    SmokeCheck("GET", "/api/openapi.json", 200, expect_key="openapi"),
    SmokeCheck("GET", "/metrics", 200, mimetype="text/plain"),
    SmokeCheck("GET", "/api/no-such-route", 404, mimetype=_PROBLEM, expect_key="title"),
    SmokeCheck("GET", "/api/telemetry/log", 405, mimetype=_PROBLEM, expect_key="title"),
)


def run_smoke_checks(app: Flask) -> Iterator[SmokeResult]:
    """Run every smoke check against ``app`` in this process, yielding each result as it comes."""
    headers = {"X-User-Id": SMOKE_USER}
    token = app.config["TELEMETRY_INGEST_TOKEN"]
    if token:
        headers["Authorization"] = f"Bearer {token}"
    client = app.test_client()
    for check in SMOKE_CHECKS:
        yield check.run(client, headers)


def check_event_lines(app: Flask, results: Sequence[SmokeResult]) -> tuple[bool, str]:
    """One line saying whether the stream holds exactly the events the passed checks wrote."""
    from .event_logger import get_event_logger

    path = app.config["TELEMETRY_EVENTS_LOG"]
    with app.app_context():
        flushed = get_event_logger().flush()
    with open(path, encoding="utf-8") as stream:
        lines = [json.loads(line) for line in stream.read().splitlines()]
    emitted = app.config["TELEMETRY_ENABLED"]
    want = Counter(result.check.emits for result in results if result.passed and result.check.emits and emitted)
    got = Counter(line["event_type"] for line in lines)
    missing = {event_id for result in results for event_id in result.event_ids} - {line["event_id"] for line in lines}
    summary = f"events: {len(lines)} line(s) in {path}"
    if flushed and got == want and not (emitted and missing):
        return True, f"ok   {summary}, one per accepted event"
    detail = f"want {dict(sorted(want.items()))}, got {dict(sorted(got.items()))}"
    if emitted and missing:
        detail += f"; accepted but not written: {', '.join(sorted(missing))}"
    return False, f"FAIL {summary}: {detail}"


def settings_of(app: Flask) -> dict[str, Any]:
    """The app's settings the factory takes (its DEFAULTS and TESTING), as JSON for the checks' process."""
    from ..config import DEFAULTS

    settings = {}
    for key in (*DEFAULTS, "TESTING"):
        try:
            settings[key] = json.loads(json.dumps(app.config[key]))
        except (KeyError, TypeError, ValueError):
            continue
    return settings


def run_isolated(app: Flask) -> tuple[str, list[str], bool]:
    """Run the checks on a copy of ``app`` in a process of their own; return (where events went, lines, passed).

    The events file is removed before this returns, whatever the outcome.
    """
    backend = str(Path(__file__).resolve().parents[2])
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in _ISOLATED_ENVIRONMENT and not name.startswith("FLASK_")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (backend, env.get("PYTHONPATH"))))
    with tempfile.TemporaryDirectory(prefix="telemetry-smoke-") as workdir:
        events_path = os.path.join(workdir, "events.jsonl")
        try:
            finished = subprocess.run(
                [sys.executable, "-m", "app.analytics.smoke", events_path],
                input=json.dumps(settings_of(app)),
                capture_output=True,
                text=True,
                env=env,
                timeout=SMOKE_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return events_path, [f"FAIL the smoke checks did not finish within {SMOKE_TIMEOUT} s"], False
    lines = finished.stdout.splitlines()
    if finished.returncode not in (0, CHECKS_FAILED):
        # Not a verdict but a crash: its last words say why.
        lines += [f"FAIL the smoke checks' process exited with status {finished.returncode}"]
        lines += finished.stderr.strip().splitlines()[-1:]
    return events_path, lines, finished.returncode == 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m app.analytics.smoke EVENTS_PATH``, settings as JSON on stdin: the checks' process."""
    from .. import create_app

    (events_path,) = argv if argv is not None else sys.argv[1:]
    # Its own stream, and its own budget: a shared Redis must not count the checks against anyone.
    settings = {
        **json.load(sys.stdin),
        "TELEMETRY_EVENTS_LOG": events_path,
        "TELEMETRY_RATE_LIMIT_STORAGE": "memory://",
    }
    app = create_app(settings)
    results = []
    for result in run_smoke_checks(app):
        results.append(result)
        print(result.line(), flush=True)
    lines_ok, line = check_event_lines(app, results)
    print(line)
    with app.app_context():
        app.extensions["event_logger"].shutdown()
    return 0 if lines_ok and all(result.passed for result in results) else CHECKS_FAILED


if __name__ == "__main__":
    sys.exit(main())
