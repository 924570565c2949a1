"""Instructions per request, counted by valgrind's callgrind: the same count on every run, busy machine or not.

Timings on a shared two-core VM move by ±15 % between rounds, more than
some of the costs the targets bound (metrics: 3 %). Callgrind counts the
instructions a process executes instead. Each variant runs in process (the
app's ``wsgi_app``, no gunicorn, no sockets) for two request counts; the
difference divided by the difference in requests is the cost of one request,
start-up excluded. Run alone with ``python tests/benchmarks/instructions.py``.
"""

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
COUNTS = (100, 600)
EVENT_BODY = {"event_type": "chapter_visit", "payload": {"user_id": "u-42", "chapter_id": "ch-3"}}
QUESTION_BODY = {"chapter_id": "ch-3", "section_id": "s-1", "question": "Why is the sky blue?"}

# name: (module whose ``app`` serves, path, body, extra environment)
VARIANTS = {
    "telemetry route": ("wsgi", "/api/telemetry/log", EVENT_BODY, {}),
    "telemetry route, metrics off": ("metrics_off", "/api/telemetry/log", EVENT_BODY, {}),
    "minimal Flask": ("minimal_flask", "/api/telemetry/log", EVENT_BODY, {}),
    "AI block, telemetry on": ("wsgi", "/api/ai/ask-question", QUESTION_BODY, {}),
    "AI block, telemetry off": ("wsgi", "/api/ai/ask-question", QUESTION_BODY, {"FLASK_TELEMETRY_ENABLED": "false"}),
}
_COLLECTED = re.compile(r"Collected : (\d+)")


def available():
    return shutil.which("valgrind") is not None


def measure(workdir):
    """Instructions per request of every variant, as production runs it (metrics in multiprocess mode)."""
    return {name: _per_request(Path(workdir), name, *variant) for name, variant in VARIANTS.items()}


def _per_request(workdir, name, module, path, body, env):
    counts = []
    for requests in COUNTS:
        metrics_dir = tempfile.mkdtemp(dir=workdir)
        environment = {
            **{key: value for key, value in os.environ.items() if not key.startswith("FLASK_")},
            "FLASK_TELEMETRY_EVENTS_LOG": str(workdir / f"{name}.jsonl"),
            "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
            # The same dict layouts and set orders on every run.
            "PYTHONHASHSEED": "0",
            **env,
        }
        command = [
            "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
            # The venv's own interpreter path, so that it finds the venv's packages.
            sys.executable, __file__, "--child", module, path, json.dumps(body), str(requests),
        ]
        done = subprocess.run(command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, check=True)
        counts.append(int(_COLLECTED.search(done.stderr).group(1)))
    return (counts[1] - counts[0]) / (COUNTS[1] - COUNTS[0])


def _serve(module, path, body, requests):
    """The child: ``requests`` POSTs of ``body`` to ``path`` through the app's WSGI callable."""
    sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "backend"), str(HERE)]
    app = __import__(module).app
    data = body.encode()
    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": path, "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80",
        "wsgi.url_scheme": "http", "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(data)),
    }
    for _ in range(requests):
        answer = app.wsgi_app({**environ, "wsgi.input": io.BytesIO(data)}, lambda status, headers, exc=None: None)
        b"".join(answer)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _serve(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        with tempfile.TemporaryDirectory(prefix="telemetry-instructions-") as workdir:
            for variant, instructions in measure(workdir).items():
                print(f"{variant:30} {instructions:>12,.0f} instructions per request")
