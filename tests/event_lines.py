"""Event lines as the tests read them: parsed, and held to the committed event line schema (SPEC S15)."""

import json
from pathlib import Path

from jsonschema import Draft202012Validator

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "specs/059-analytics-telemetry/contracts/event-line.schema.json"
# Compiled once per test process: every line any fixture reads goes through it.
_VALIDATOR = Draft202012Validator(
    json.loads(SCHEMA_PATH.read_text(encoding="utf-8")), format_checker=Draft202012Validator.FORMAT_CHECKER
)


def parse_event_line(line: str | bytes) -> dict:
    """One event line, parsed; AssertionError when it breaks the event line schema."""
    event = json.loads(line)
    error = next(_VALIDATOR.iter_errors(event), None)
    assert error is None, f"the event line breaks {SCHEMA_PATH.name}: {error.message}\n{line!r}"
    return event


def parse_event_lines(text: str | bytes, skip_blank: bool = False) -> list[dict]:
    """Every line of ``text``, parsed and checked as an event line; blank ones left out if ``skip_blank``."""
    return [parse_event_line(line) for line in text.splitlines() if line.strip() or not skip_blank]
