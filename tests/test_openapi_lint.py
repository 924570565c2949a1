"""The served OpenAPI document and the committed contract pass the linters people use.

Redocly CLI (its recommended rules, tests/redocly.yaml) and Spectral
(``spectral:oas``, tests/.spectral.yaml), at the versions tests/package.json
pins, installed into tests/node_modules by ``npm ci --prefix tests`` (.ci/run
does it). Without Node or the packages the tests are skipped, or fail when
``CI=true``: CI must run them.
"""

import json
import os
import shutil
import subprocess

import pytest
from app import create_app
from gunicorn_server import REPO_ROOT

TESTS = REPO_ROOT / "tests"
BIN = TESTS / "node_modules" / ".bin"
CONTRACT = REPO_ROOT / "specs/059-analytics-telemetry/contracts/telemetry-api.yaml"
# Both take a few seconds of Node start-up; a stuck one must not hold the suite.
LINT_TIMEOUT = 120

LINTERS = {
    "redocly": ["lint", "--config", str(TESTS / "redocly.yaml"), "--format=json"],
    "spectral": [
        "lint",
        "--ruleset",
        str(TESTS / ".spectral.yaml"),
        "--format=json",
        "--quiet",
        "--fail-severity=hint",
    ],
}
# No usage reports and no update checks: the tests talk to loopback only.
QUIET = {"REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true", "NO_UPDATE_NOTIFIER": "1"}


def _missing():
    if shutil.which("npx") is None or shutil.which("node") is None:
        return "Node.js is not installed (npx and node are needed)"
    absent = [name for name in LINTERS if not (BIN / name).exists()]
    if absent:
        return f"{', '.join(absent)} not installed: run `npm ci --prefix tests`"
    return None


@pytest.fixture(scope="module")
def lint_runs(tmp_path_factory):
    """Both linters started at once on both documents; each test waits for its own."""
    missing = _missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the OpenAPI linters must run on CI: {missing}")
        pytest.skip(missing)
    workdir = tmp_path_factory.mktemp("lint")
    app = create_app({"TESTING": True, "TELEMETRY_EVENTS_LOG": str(workdir / "events.jsonl")})
    served = workdir / "openapi.json"
    served.write_bytes(app.test_client().get("/api/openapi.json").get_data())
    with app.app_context():
        app.extensions["event_logger"].shutdown()
    env = {**os.environ, **QUIET}
    runs = {
        name: subprocess.Popen(
            [str(BIN / name), *options, str(served), str(CONTRACT)],
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, options in LINTERS.items()
    }
    yield runs
    for run in runs.values():
        if run.poll() is None:
            run.kill()
            run.wait()


def finish(run):
    stdout, stderr = run.communicate(timeout=LINT_TIMEOUT)
    return run.returncode, stdout, stderr


def json_values(text):
    """The JSON values of ``text``, one after another (Redocly prints one report per document)."""
    decoder, values, position = json.JSONDecoder(), [], 0
    text = text.strip()
    while position < len(text):
        value, position = decoder.raw_decode(text, position)
        values.append(value)
        position += len(text[position:]) - len(text[position:].lstrip())
    return values


def test_redocly_recommended_rules_find_nothing(lint_runs):
    status, stdout, stderr = finish(lint_runs["redocly"])

    reports = json_values(stdout)
    assert status == 0 and len(reports) == 2, stderr
    problems = [problem for report in reports for problem in report["problems"]]
    assert problems == [], json.dumps(problems, indent=2)
    assert all(report["totals"] == {"errors": 0, "warnings": 0, "ignored": 0} for report in reports)


def test_spectral_oas_rules_find_nothing(lint_runs):
    status, stdout, stderr = finish(lint_runs["spectral"])

    assert json.loads(stdout) == [], stdout
    assert status == 0, stderr
