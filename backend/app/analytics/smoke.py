"""In-process smoke checks: every route called once through the test client."""

from dataclasses import dataclass

SMOKE_USER = "smoke-test"
_PROBLEM = "application/problem+json"


@dataclass(frozen=True)
class SmokeCheck:
    """One request and the answer it must get."""

    method: str
    path: str
    status: int
    body: dict | None = None
    mimetype: str = "application/json"
    expect_key: str | None = None

    def run(self, client, headers):
        response = client.open(self.path, method=self.method, json=self.body, headers=headers)
        problems = []
        if response.status_code != self.status:
            problems.append(f"status {response.status_code}")
        if response.mimetype != self.mimetype:
            problems.append(f"content type {response.mimetype}")
        if self.expect_key and self.expect_key not in (response.get_json(silent=True) or {}):
            problems.append(f"no {self.expect_key!r} in the body")
        return SmokeResult(self, response.status_code, "; ".join(problems))


@dataclass(frozen=True)
class SmokeResult:
    check: SmokeCheck
    got: int
    problem: str

    @property
    def passed(self):
        return not self.problem

    def line(self):
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
    ),
    SmokeCheck("POST", "/api/telemetry/log", 422, {"event_type": "no_such_event"}, _PROBLEM, "errors"),
    SmokeCheck(
        "POST",
        "/api/telemetry/batch",
        202,
        {"events": [{"event_type": "error_event", "payload": {"error_type": "SmokeTest"}}]},
        expect_key="results",
    ),
    SmokeCheck("GET", "/api/telemetry/client.js", 200, mimetype="text/javascript"),
    SmokeCheck("POST", "/api/ai/ask-question", 200, {**_CHAPTER, "question": "Why?"}, expect_key="answer"),
    SmokeCheck("POST", "/api/ai/ask-question", 422, {"chapter_id": ""}, _PROBLEM, "errors"),
    SmokeCheck("POST", "/api/ai/explain-like-10", 200, {**_CHAPTER, "concept": "gravity"}, expect_key="explanation"),
    SmokeCheck("POST", "/api/ai/quiz", 200, {**_CHAPTER, "num_questions": 2}, expect_key="questions"),
    SmokeCheck("POST", "/api/ai/diagram", 200, {**_CHAPTER, "description": "a cycle"}, expect_key="diagram"),
    SmokeCheck("GET", "/api/openapi.json", 200, expect_key="openapi"),
    SmokeCheck("GET", "/metrics", 200, mimetype="text/plain"),
    SmokeCheck("GET", "/api/no-such-route", 404, mimetype=_PROBLEM, expect_key="title"),
    SmokeCheck("GET", "/api/telemetry/log", 405, mimetype=_PROBLEM, expect_key="title"),
)


def run_smoke_checks(app):
    """Run every smoke check against ``app``, yielding each result as it comes."""
    headers = {"X-User-Id": SMOKE_USER}
    token = app.config["TELEMETRY_INGEST_TOKEN"]
    if token:
        headers["Authorization"] = f"Bearer {token}"
    client = app.test_client()
    for check in SMOKE_CHECKS:
        yield check.run(client, headers)
