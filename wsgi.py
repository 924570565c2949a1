"""WSGI entry point: ``gunicorn wsgi:app`` and ``flask --app wsgi``."""

import sys
from pathlib import Path

# The app is run from the repository, not installed: make backend/ importable.
sys.path.insert(0, str(Path(__file__).resolve().parent / "backend"))

from app import create_app  # noqa: E402
from app.config import ConfigError  # noqa: E402

try:
    app = create_app()
except ConfigError as error:
    # One line, no traceback, in the CLI and in each gunicorn worker. Status 4
    # is what gunicorn's master reads as "the application failed to load": it
    # stops instead of re-forking workers.
    print(f"Configuration error: {error}", file=sys.stderr)
    sys.exit(4)
