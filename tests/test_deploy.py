"""backend/deploy/ (SPEC S15): alerting rules tested with promtool, a dashboard and a systemd unit over real metrics."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest
import yaml
from doc_commands import production_block
from gunicorn_server import REPO_ROOT, GunicornServer
from prometheus_client.parser import text_string_to_metric_families

DEPLOY = REPO_ROOT / "backend" / "deploy"
RULES = DEPLOY / "alerts.yml"
RULE_TESTS = DEPLOY / "alerts.test.yml"
DASHBOARD = DEPLOY / "dashboard.json"
UNIT = DEPLOY / "textbook-telemetry.service"
# The unit's install prefix, replaced by this checkout and its virtualenv for systemd-analyze.
INSTALL_PREFIX = "/srv/textbook"

_METRIC = re.compile(r"\btelemetry_[a-z0-9_]+\b")
_GROUPING = re.compile(r"\bby \(([^)]*)\)")
_LABEL_VALUES = re.compile(r"label_values\((.+), *\w+\)")
# Labels Prometheus adds (job, instance) or a histogram has (le): not the app's to serve.
_TARGET_LABELS = {"job", "instance", "le"}


def tool(name, package):
    """The path of a system tool the tests need: on CI a missing one fails, elsewhere it skips."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install -y {package})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but the deployment tests cannot run: {message}", pytrace=False)
        pytest.skip(message)
    return path


def run(command, cwd=DEPLOY):
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60)


def alert_rules():
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def dashboard_expressions():
    """Every query of the dashboard, its variables replaced by what a user could pick."""
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    # A variable's label_values(selector, label) is Grafana's: the selector is the PromQL in it.
    expressions += [
        _LABEL_VALUES.fullmatch(variable["query"]["query"]).group(1)
        for variable in dashboard["templating"]["list"]
        if variable["type"] == "query"
    ]
    return [
        expression.replace("$__rate_interval", "5m").replace("$job", ".+").replace("$instance", ".+")
        for expression in expressions
    ]


def test_alerting_rules_pass_promtool_check():
    result = run([tool("promtool", "prometheus"), "check", "rules", RULES.name])

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_every_alert_fires_in_its_promtool_unit_test():
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {check["alertname"] for test in tests for check in test["alert_rule_test"] if check["exp_alerts"]}

    result = run([tool("promtool", "prometheus"), "test", "rules", RULE_TESTS.name])

    assert result.returncode == 0, result.stdout + result.stderr
    assert fired == {rule["alert"] for rule in alert_rules()}
    assert {"sink", "5xx", "rejected", "rate limit", "no events", "backlog"} <= {
        topic
        for rule in alert_rules()
        for topic, words in {
            "sink": ("telemetry_sink_write_failures_total", "telemetry_events_refused_total"),
            "5xx": ('code=~"5.."',),
            "rejected": ("telemetry_events_rejected_total",),
            "rate limit": ("telemetry_rate_limiter_errors_total",),
            "no events": ("telemetry_events_accepted_total",),
            "backlog": ("telemetry_backlog_events",),
        }.items()
        if any(word in rule["expr"] for word in words)
    }


def test_dashboard_queries_are_valid_promql(tmp_path):
    # promtool checks expressions inside rule files: each query becomes a recording rule.
    rules = [
        {"record": f"dashboard:query_{number}", "expr": expr} for number, expr in enumerate(dashboard_expressions())
    ]
    (tmp_path / "dashboard-queries.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))

    result = run([tool("promtool", "prometheus"), "check", "rules", "dashboard-queries.yml"], cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.gunicorn
def test_every_metric_the_rules_and_dashboard_name_is_on_a_live_servers_metrics(tmp_path):
    expressions = [rule["expr"] for rule in alert_rules()] + dashboard_expressions()
    named = {name for expression in expressions for name in _METRIC.findall(expression)}
    grouped = {
        label.strip()
        for expression in expressions
        for labels in _GROUPING.findall(expression)
        for label in labels.split(",")
    }
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    with GunicornServer(tmp_path, "--config", "backend/gunicorn.conf.py", "--preload", env=env) as server:
        server.request("POST", "/api/telemetry/log", {"event_type": "chapter_visit"})
        server.request("POST", "/api/telemetry/log", {"event_type": "page_view"})
        server.request("GET", "/api/no-such-route")
        status, _, raw = server._send("GET", "/metrics")

    assert status == 200
    samples = [sample for family in text_string_to_metric_families(raw.decode()) for sample in family.samples]
    assert named - {sample.name for sample in samples} == set()
    assert grouped - _TARGET_LABELS - {label for sample in samples for label in sample.labels} == set()


def production_command():
    return shlex.split(production_block().text)


def unit_settings():
    settings = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            name, _, value = line.partition("=")
            settings.setdefault(name, []).append(value)
    return settings


def test_systemd_unit_runs_the_readme_production_command_with_its_metrics_in_its_runtime_directory():
    settings = unit_settings()
    readme = production_command()
    readme_env = dict(word.split("=", 1) for word in readme[: readme.index("gunicorn")])
    gunicorn = shlex.split(settings["ExecStart"][0])

    assert gunicorn[0] == f"{INSTALL_PREFIX}/.venv/bin/gunicorn"
    assert gunicorn[1:] == readme[readme.index("gunicorn") + 1 :]
    environment = dict(value.split("=", 1) for value in settings["Environment"])
    assert set(readme_env) <= set(environment)
    (runtime,) = settings["RuntimeDirectory"]
    assert environment["PROMETHEUS_MULTIPROC_DIR"] == f"/run/{runtime}"


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (it comes with systemd)")
    # verify checks that ExecStart's program exists: point the unit at this checkout.
    unit = tmp_path / UNIT.name
    unit.write_text(
        UNIT.read_text()
        .replace(f"{INSTALL_PREFIX}/.venv/bin/gunicorn", str(shutil.which("gunicorn") or f"{sys.prefix}/bin/gunicorn"))
        .replace(INSTALL_PREFIX, str(REPO_ROOT))
    )

    result = run([analyze, "verify", str(unit)], cwd=tmp_path)

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
