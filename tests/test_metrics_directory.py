"""PROMETHEUS_MULTIPROC_DIR: checked at startup, untouched by a command that counts nothing, one per server."""

import os
import subprocess
import sys

import pytest
from app import create_app
from app.config import ConfigError
from doc_commands import DocsServer, production_block
from gunicorn_server import REPO_ROOT
from prometheus_client.parser import text_string_to_metric_families

# One worker: when several fail to load at the same moment, gunicorn 27's arbiter
# can raise its own HaltServer twice and print a traceback (not the app's). The
# production command's --config stops the master before any worker starts.
GUNICORN = [sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:0", "--no-control-socket", "--workers", "1"]


@pytest.mark.parametrize(
    ("make_value", "message"),
    [
        (lambda tmp_path: str(tmp_path / "missing"), "does not exist"),
        (lambda tmp_path: str(tmp_path / "afile"), "is not a directory"),
        (lambda tmp_path: "", "is set but empty"),
    ],
)
def test_unusable_metrics_directory_stops_startup(tmp_path, monkeypatch, make_value, message):
    (tmp_path / "afile").write_text("")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", make_value(tmp_path))

    with pytest.raises(ConfigError, match=f"PROMETHEUS_MULTIPROC_DIR .*{message}"):
        create_app({"TESTING": True, "TELEMETRY_EVENTS_LOG": str(tmp_path / "events.jsonl")})


@pytest.mark.parametrize(
    "command",
    [
        pytest.param([sys.executable, "-m", "flask", "--app", "wsgi", "telemetry", "health"], id="flask"),
        pytest.param([*GUNICORN, "wsgi:app"], marks=pytest.mark.gunicorn, id="gunicorn"),
        pytest.param([*GUNICORN, "--preload", "wsgi:app"], marks=pytest.mark.gunicorn, id="gunicorn-preload"),
        # The settings file creates a missing directory; one it cannot create is the app's to report.
        pytest.param(
            [*GUNICORN, "--config", "backend/gunicorn.conf.py", "wsgi:app"],
            marks=pytest.mark.gunicorn,
            id="gunicorn-config",
        ),
    ],
)
def test_missing_metrics_directory_fails_startup_in_one_line(tmp_path, command):
    (tmp_path / "afile").write_text("")
    # Under a regular file: missing, and impossible to create.
    metrics_dir = tmp_path / "afile" / "metrics"
    env = {"PATH": os.environ["PATH"], "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}

    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)

    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr and "FileNotFoundError" not in result.stderr, result.stderr
    message = f"Configuration error: PROMETHEUS_MULTIPROC_DIR '{metrics_dir}' does not exist"
    lines = [line for line in result.stderr.splitlines() if message in line]
    # Once from the CLI or a preloading master, at most once per worker otherwise.
    assert 1 <= len(lines) <= 2, result.stderr
    assert result.stdout == "", result.stdout


def test_a_command_that_counts_nothing_leaves_the_metrics_directory_empty(tmp_path):
    # The series are made on first use: importing the app opens no file in the directory.
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "FLASK_TELEMETRY_EVENTS_LOG": os.devnull}

    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "telemetry", "health"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        check=True,
        timeout=60,
    )

    assert list(metrics_dir.iterdir()) == []


def accepted_visits(server):
    """The server's total of chapter_visit events accepted, from one /metrics answer."""
    status, _, raw = server._send("GET", "/metrics")
    assert status == 200
    for family in text_string_to_metric_families(raw.decode()):
        for sample in family.samples:
            if sample.name == "telemetry_events_accepted_total" and sample.labels["event_type"] == "chapter_visit":
                return sample.value
    raise AssertionError(f"no chapter_visit total in {raw[:200]!r}")


def send_visits(server, count):
    for _ in range(count):
        assert server.request("POST", "/api/telemetry/log", {"event_type": "chapter_visit"})[0] == 202


@pytest.mark.gunicorn
def test_two_servers_started_with_the_production_command_keep_their_own_figures(tmp_path):
    block = production_block()
    first = DocsServer(tmp_path / "first", block)
    second = DocsServer(tmp_path / "second", block)
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    with first:
        send_visits(first, 5)
        # Every worker answers with the server's total, so scrape a few times.
        assert [accepted_visits(first) for _ in range(3)] == [5] * 3
        with second:
            assert [accepted_visits(first) for _ in range(3)] == [5] * 3
            assert accepted_visits(second) == 0
            send_visits(second, 3)
            send_visits(first, 2)
            assert [accepted_visits(first) for _ in range(3)] == [7] * 3
            assert [accepted_visits(second) for _ in range(3)] == [3] * 3
        assert [accepted_visits(first) for _ in range(3)] == [7] * 3
        first_stderr = first.stderr_text()

    assert "Traceback" not in first_stderr and "Traceback" not in second.stderr_text()
