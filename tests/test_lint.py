"""The checkers Flask runs on itself: ruff (lint and format) on the repository, mypy --strict on backend/app."""

import subprocess
import sys

import pytest
from gunicorn_server import REPO_ROOT

# Their settings: .ruff.toml, and [mypy] in setup.cfg.
CHECKS = {
    "ruff check": ["ruff", "check", "--no-fix", "."],
    "ruff format": ["ruff", "format", "--check", "."],
    "mypy --strict": ["mypy"],
}


@pytest.mark.parametrize("command", CHECKS.values(), ids=CHECKS.keys())
def test_the_checker_finds_nothing(command):
    result = subprocess.run(
        [sys.executable, "-m", *command],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, f"{' '.join(command)} found:\n{result.stdout}{result.stderr}"
