"""With requirements.txt alone (pytest, no test tools), pytest still starts and runs a test file of one's own."""

import configparser
import re
import subprocess
import sys

from gunicorn_server import REPO_ROOT

# The modules only tests/requirements.txt installs (and the pytest plugins among them).
TEST_TOOLS = (
    "schemathesis",
    "hypothesis",
    "_hypothesis_pytestplugin",
    "xdist",
    "playwright",
    "openapi_spec_validator",
    "openapi_schema_validator",
    "mypy",
)


def test_pytest_runs_a_test_file_without_the_test_tools():
    # A None in sys.modules makes a module absent both to import and to importlib.util.find_spec.
    hide = f"import sys; sys.modules.update(dict.fromkeys({TEST_TOOLS!r})); import pytest; "
    run = "sys.exit(pytest.main(['-p', 'no:cacheprovider', 'tests/test_recording.py']))"
    result = subprocess.run(
        [sys.executable, "-c", hide + run],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\d+ passed", result.stdout)
    assert "workers" not in result.stdout  # no xdist: one process


def test_setup_cfg_names_no_test_tool_plugin():
    config = configparser.ConfigParser()
    config.read(REPO_ROOT / "setup.cfg", encoding="utf-8")
    addopts = config["tool:pytest"]["addopts"]

    assert "-p" not in addopts.split() and "--numprocesses" not in addopts and " -n" not in addopts
