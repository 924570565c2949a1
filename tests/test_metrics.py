"""GET /metrics: what each outcome counts, in process, and exact totals across gunicorn workers."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from gunicorn_server import REPO_ROOT, GunicornServer
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

LOG = "/api/telemetry/log"
BATCH = "/api/telemetry/batch"
VISIT = {"event_type": "chapter_visit", "payload": {"chapter_id": "ch-1"}}
INVALID = {"event_type": "page_view"}
TOO_LARGE = {"event_type": "chapter_visit", "payload": {"note": "x" * 5000}}


class Counts:
    """The process's metric samples now, and how they moved since."""

    SAMPLES = {
        "accepted": ("telemetry_events_accepted_total", ("event_type",)),
        "rejected": ("telemetry_events_rejected_total", ("reason",)),
        "refused": ("telemetry_events_refused_total", ()),
        "dropped": ("telemetry_events_dropped_total", ()),
        "write_failures": ("telemetry_sink_write_failures_total", ()),
        "backlog": ("telemetry_backlog_events", ()),
    }

    def __init__(self):
        self.before = self._snapshot()

    def _snapshot(self):
        return {sample.name + repr(sorted(sample.labels.items())): sample.value for sample in self._samples()}

    @staticmethod
    def _samples():
        for family in REGISTRY.collect():
            if family.name.startswith("telemetry_"):
                yield from family.samples

    def changes(self):
        """Every sample that moved, as {(name, label value or None): change}."""
        now = self._snapshot()
        moved = {}
        for sample in self._samples():
            key = sample.name + repr(sorted(sample.labels.items()))
            change = now[key] - self.before.get(key, 0)
            if change and not sample.name.endswith(("_created", "_sum", "_bucket")):
                label = next(iter(sample.labels.values()), None)
                moved[(sample.name, label)] = change
        return moved


def events_moved(counts):
    """The moves of the event counters only (not the request durations or the responses by status)."""
    return {
        key: change
        for key, change in counts.changes().items()
        if not key[0].startswith(("telemetry_request_duration", "telemetry_http_responses"))
    }


@pytest.mark.parametrize(
    ("send", "config", "moved"),
    [
        pytest.param(
            lambda client: client.post(LOG, json=VISIT),
            {},
            {("telemetry_events_accepted_total", "chapter_visit"): 1},
            id="202",
        ),
        pytest.param(
            lambda client: client.post(LOG, data=b"{", content_type="application/json"),
            {},
            {("telemetry_events_rejected_total", "400"): 1},
            id="400",
        ),
        pytest.param(
            lambda client: client.post(LOG, json=VISIT),
            {"TELEMETRY_INGEST_TOKEN": "t0ken"},
            {("telemetry_events_rejected_total", "401"): 1},
            id="401",
        ),
        pytest.param(
            lambda client: client.post(LOG, json=VISIT, headers={"Origin": "https://elsewhere.example"}),
            {"CORS_ORIGINS": "https://textbook.example"},
            {("telemetry_events_rejected_total", "403"): 1},
            id="403",
        ),
        pytest.param(
            lambda client: client.post(LOG, json=TOO_LARGE),
            {},
            {("telemetry_events_rejected_total", "413"): 1},
            id="413-line",
        ),
        pytest.param(
            lambda client: client.post(LOG, json={"events": [VISIT] * 10}),
            {"MAX_CONTENT_LENGTH": 256},
            {("telemetry_events_rejected_total", "413"): 1},
            id="413-body",
        ),
        pytest.param(
            lambda client: client.post(LOG, data=b"{}", content_type="text/html"),
            {},
            {("telemetry_events_rejected_total", "415"): 1},
            id="415",
        ),
        pytest.param(
            lambda client: client.post(LOG, json=INVALID),
            {},
            {("telemetry_events_rejected_total", "422"): 1},
            id="422",
        ),
        pytest.param(
            lambda client: client.post(BATCH, json={"events": []}),
            {},
            {("telemetry_events_rejected_total", "422"): 1},
            id="batch-bad-envelope-counts-once",
        ),
        pytest.param(
            lambda client: client.post(BATCH, data=b"{", content_type="text/plain"),
            {},
            {("telemetry_events_rejected_total", "400"): 1},
            id="batch-unreadable-body-counts-once",
        ),
        pytest.param(
            lambda client: client.post(BATCH, json={"events": [VISIT, INVALID, TOO_LARGE, VISIT, INVALID]}),
            {},
            {
                ("telemetry_events_accepted_total", "chapter_visit"): 2,
                ("telemetry_events_rejected_total", "422"): 2,
                ("telemetry_events_rejected_total", "413"): 1,
            },
            id="batch-mixed-counts-each-event",
        ),
        pytest.param(
            lambda client: client.post(BATCH, json={"events": [INVALID, INVALID]}),
            {},
            {("telemetry_events_rejected_total", "422"): 2},
            id="batch-none-accepted",
        ),
        pytest.param(
            lambda client: client.post("/api/ai/quiz", json={"chapter_id": "c"}),
            {},
            {("telemetry_events_accepted_total", "ai_block_used"): 1},
            id="ai-block",
        ),
        pytest.param(
            lambda client: client.post("/api/ai/quiz", json={"chapter_id": ""}),
            {},
            {},
            id="ai-block-422-is-no-event",
        ),
        pytest.param(
            lambda client: client.get("/api/telemetry/health"),
            {},
            {},
            id="health-counts-nothing",
        ),
    ],
)
def test_each_outcome_moves_its_counter(make_app, send, config, moved):
    client = make_app(config).test_client()
    counts = Counts()

    send(client)

    assert events_moved(counts) == moved


def test_a_failing_stream_counts_refused_dropped_and_write_failures(make_app):
    client = make_app({"TELEMETRY_EVENTS_LOG": "/dev/full"}).test_client()
    counts = Counts()

    assert client.post(LOG, json=VISIT).status_code == 503
    assert client.post(BATCH, json={"events": [VISIT, VISIT, INVALID]}).status_code == 503
    assert client.post("/api/ai/quiz", json={"chapter_id": "c"}).status_code == 200

    assert events_moved(counts) == {
        ("telemetry_events_refused_total", None): 3,
        ("telemetry_events_rejected_total", "422"): 1,
        ("telemetry_events_dropped_total", None): 1,
        # Writes, not events: the batch's two valid lines share one write.
        ("telemetry_sink_write_failures_total", None): 3,
    }


def test_backlog_gauge_follows_the_backlog(stalled_app, unread_pipe):
    app = stalled_app({"TELEMETRY_STALL_SECONDS": 600})
    client = app.test_client()
    counts = Counts()

    for _ in range(3):
        assert client.post(LOG, json=VISIT).status_code == 202
    backlogged = counts.changes()[("telemetry_backlog_events", None)]
    unread_pipe.start_reading()
    with app.app_context():
        assert app.extensions["event_logger"].flush()

    assert backlogged == 3
    assert ("telemetry_backlog_events", None) not in counts.changes()


def test_request_durations_are_observed_per_route(client):
    counts = Counts()

    client.post(LOG, json=VISIT)
    client.post(LOG, json=INVALID)
    client.get("/api/telemetry/health")
    client.get("/api/no-such-route")

    moved = counts.changes()
    assert moved[("telemetry_request_duration_seconds_count", "/api/telemetry/log")] == 2
    assert moved[("telemetry_request_duration_seconds_count", "/api/telemetry/health")] == 1
    assert not [key for key in moved if key[1] == "/api/no-such-route"]


def test_two_apps_in_one_process_share_the_metrics(make_app):
    counts = Counts()

    make_app().test_client().post(LOG, json=VISIT)
    make_app().test_client().post(LOG, json=VISIT)

    assert events_moved(counts) == {("telemetry_events_accepted_total", "chapter_visit"): 2}


def test_metrics_are_served_in_prometheus_text_format(client):
    client.post(LOG, json=VISIT)

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    families = {family.name: family for family in text_string_to_metric_families(response.get_data(as_text=True))}
    assert {
        "telemetry_events_accepted",
        "telemetry_events_rejected",
        "telemetry_events_refused",
        "telemetry_events_dropped",
        "telemetry_sink_write_failures",
        "telemetry_backlog_events",
        "telemetry_request_duration_seconds",
    } <= set(families)
    reasons = {sample.labels["reason"] for sample in families["telemetry_events_rejected"].samples}
    assert {"400", "401", "403", "413", "415", "422"} <= reasons
    assert "Access-Control-Allow-Origin" not in client.get("/metrics", headers={"Origin": "https://x.example"}).headers


# --- across gunicorn workers ---------------------------------------------------

_STALE_RUN = """
import sys
sys.path.insert(0, "backend")
from app import metrics
for _ in range(1000):
    metrics.EVENTS_ACCEPTED["chapter_visit"].inc()
"""


def scrape(server):
    """The totals that matter here, from one /metrics answer."""
    status, _, raw = server._send("GET", "/metrics")
    assert status == 200
    totals = {}
    for family in text_string_to_metric_families(raw.decode()):
        for sample in family.samples:
            if sample.name == "telemetry_events_accepted_total":
                totals[sample.labels["event_type"]] = sample.value
            elif sample.name == "telemetry_events_rejected_total":
                totals[sample.labels["reason"]] = sample.value
            elif sample.name == "telemetry_request_duration_seconds_count" and sample.labels["route"] == LOG:
                totals["log requests"] = sample.value
    return totals


@pytest.mark.gunicorn
def test_totals_are_exact_across_recycled_preloaded_workers(tmp_path):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    # Values an earlier server left behind: the new one must start from zero.
    subprocess.run([sys.executable, "-c", _STALE_RUN], cwd=REPO_ROOT, env={**os.environ, **env}, check=True)
    assert list(metrics_dir.glob("counter_*.db"))

    sent = {"chapter_visit": 0, "ai_block_used": 0, "422": 0, "400": 0, "log requests": 0}
    with GunicornServer(
        tmp_path, "--config", "backend/gunicorn.conf.py", "--preload", "--max-requests", "25", env=env
    ) as server:
        for number in range(300):
            kind = number % 5
            if kind == 0:
                server.request("POST", LOG, VISIT)
                sent["chapter_visit"] += 1
                sent["log requests"] += 1
            elif kind == 1:
                server.request("POST", LOG, INVALID)
                sent["422"] += 1
                sent["log requests"] += 1
            elif kind == 2:
                server.request("POST", BATCH, {"events": [VISIT, INVALID, VISIT]})
                sent["chapter_visit"] += 2
                sent["422"] += 1
            elif kind == 3:
                server._send("POST", LOG, headers={"Content-Type": "application/json"})
                sent["400"] += 1
                sent["log requests"] += 1
            else:
                server.request("POST", "/api/ai/quiz", {"chapter_id": "c"})
                sent["ai_block_used"] += 1
            if number % 30 == 29:
                # Every answer, from whichever worker, has the server's exact totals.
                for _ in range(3):
                    totals = scrape(server)
                    assert {key: totals[key] for key in sent} == sent
        stderr = server.stderr_text()

    assert stderr.count("Autorestarting worker") >= 8
    assert "Traceback" not in stderr


SERVER_DIRECTORY = "TEXTBOOK_METRICS_SERVER_DIR"


@pytest.fixture
def load_gunicorn_config():
    """Read backend/gunicorn.conf.py as a starting gunicorn master does; the directory it chose is forgotten after."""

    def load():
        spec = importlib.util.spec_from_file_location("gunicorn_conf", REPO_ROOT / "backend" / "gunicorn.conf.py")
        config = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(config)
        return config

    yield load
    os.environ.pop(SERVER_DIRECTORY, None)


def test_each_server_gets_its_own_metrics_directory_and_removes_it_on_exit(tmp_path, monkeypatch, load_gunicorn_config):
    base = tmp_path / "metrics"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(base))
    # A server killed earlier: nothing holds its lock any more.
    dead = base / "server-1-dead"
    dead.mkdir(parents=True)
    (dead / "server.lock").write_bytes(b"")
    (dead / "counter_1.db").write_bytes(b"")

    config = load_gunicorn_config()
    first = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    # gunicorn reads its settings again on HUP: the same server keeps its directory.
    load_gunicorn_config()
    assert Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]) == first
    # Another server started with the same command: a directory of its own; the first one's stays.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(base))
    monkeypatch.delenv(SERVER_DIRECTORY)
    load_gunicorn_config()
    second = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])

    assert first.parent == second.parent == base and first != second
    assert first.is_dir() and second.is_dir() and not dead.exists()
    config.on_starting(server=None)
    config.on_exit(server=None)
    assert first.is_dir() and not second.exists()


def test_gunicorn_hooks_mark_dead_workers(tmp_path, monkeypatch, load_gunicorn_config):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    config = load_gunicorn_config()
    own = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])

    config.on_starting(server=None)
    for name in ("counter_11.db", "gauge_livesum_11.db", "gauge_livesum_12.db", "histogram_11.db"):
        (own / name).write_bytes(b"")
    config.child_exit(server=None, worker=SimpleNamespace(pid=11))

    assert sorted(path.name for path in own.glob("*.db")) == ["counter_11.db", "gauge_livesum_12.db", "histogram_11.db"]


def test_gunicorn_hooks_do_nothing_without_the_variable(monkeypatch, load_gunicorn_config):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    config = load_gunicorn_config()

    config.on_starting(server=None)
    config.child_exit(server=None, worker=SimpleNamespace(pid=11))


def responses(route, code):
    """This process's count of responses to ``route`` with status ``code``."""
    return REGISTRY.get_sample_value("telemetry_http_responses_total", {"route": route, "code": code}) or 0


def test_responses_are_counted_by_route_rule_and_status(make_app):
    client = make_app({"TELEMETRY_EVENTS_LOG": "/dev/full"}).test_client()
    routes = [(LOG, "202"), (LOG, "422"), (LOG, "503"), (LOG, "405"), ("unmatched", "404"), ("/api/ai/quiz", "200")]
    before = {key: responses(*key) for key in routes}

    make_app().test_client().post(LOG, json=VISIT)
    client.post(LOG, json=INVALID)
    client.post(LOG, json=VISIT)  # the sink cannot write: 503
    client.get(LOG)
    for number in range(3):
        client.get(f"/api/nothing/{number}")
    client.post("/api/ai/quiz", json={"chapter_id": "c"})

    moved = {key: responses(*key) - before[key] for key in routes}
    assert moved == {key: 3 if key == ("unmatched", "404") else 1 for key in routes}
    # Unknown paths share one label: no path of a 404 ever becomes a series.
    routes_seen = {
        sample.labels["route"]
        for family in REGISTRY.collect()
        if family.name == "telemetry_http_responses"
        for sample in family.samples
    }
    assert not any(route.startswith("/api/nothing") for route in routes_seen)
