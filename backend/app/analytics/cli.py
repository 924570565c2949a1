"""``flask telemetry``: health, log, smoke, openapi and event-schema from the command line."""

import json
from typing import Any

import click
import yaml
from flask import current_app
from flask.cli import with_appcontext

from ..context import this_app
from ..openapi import build_spec
from .event_line_schema import event_line_schema_text
from .event_logger import EventRejected, SinkUnavailable, get_event_logger


@click.group("telemetry")
def telemetry_cli() -> None:
    """Analytics events: log one, check health, smoke-test the API, print OpenAPI."""


@telemetry_cli.command("health")
@with_appcontext
def health_command() -> None:
    """Print this process's health report as JSON; exit 1 when unhealthy."""
    report = get_event_logger().health()
    click.echo(json.dumps(report, indent=2))
    if report["status"] != "healthy":
        raise SystemExit(1)


@telemetry_cli.command("log")
@click.argument("event_type")
@click.option("--payload", default=None, help="The event's payload as a JSON object.")
@with_appcontext
def log_command(event_type: str, payload: str | None) -> None:
    """Log one EVENT_TYPE event through the EventLogger and print its line."""
    loaded: Any = None
    if payload is not None:
        try:
            loaded = current_app.json.loads(payload)
        except ValueError as exc:
            raise click.ClickException(f"--payload is not valid JSON: {exc}") from None
    event_logger = get_event_logger()
    try:
        event = event_logger.accept(event_type, loaded)
    except (EventRejected, SinkUnavailable) as exc:
        raise click.ClickException(str(exc)) from None
    if not event_logger.flush():
        raise click.ClickException("the event was queued but not written in time")
    if not current_app.config["TELEMETRY_ENABLED"]:
        click.echo("telemetry is disabled: the event was validated but not emitted", err=True)
    # On the default stdout sink the emitted line is already the output.
    if current_app.config["TELEMETRY_EVENTS_LOG"] or not current_app.config["TELEMETRY_ENABLED"]:
        click.echo(event.to_line())


@telemetry_cli.command("smoke")
@with_appcontext
def smoke_command() -> None:
    """Call every route in-process, leaving no trace; print one line per check, exit 1 on any failure.

    The checks run in a process of their own on a copy of the app: their
    events go to a temporary file, their counts to that process's registry.
    """
    from .smoke import run_isolated

    events_path, lines, passed = run_isolated(this_app())
    for line in lines:
        click.echo(line)
    click.echo(
        f"Smoke events went to {events_path} (now removed) and their counts to the smoke process's own "
        "registry: the event stream and the metrics directory are untouched."
    )
    if not passed:
        failures = sum(line.startswith("FAIL") for line in lines)
        raise click.ClickException(f"{failures} smoke check(s) failed")


@telemetry_cli.command("openapi")
@click.option("--prefix", default=None, help="Document only the routes under this path (default: /api and /metrics).")
@click.option("--format", "output", type=click.Choice(["json", "yaml"]), default="json", show_default=True)
@with_appcontext
def openapi_command(prefix: str | None, output: str) -> None:
    """Print the OpenAPI document generated from the route schemas."""
    spec = build_spec(current_app, (prefix,)) if prefix else build_spec(current_app)
    if output == "yaml":
        click.echo(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), nl=False)
    else:
        click.echo(json.dumps(spec, indent=2))


@telemetry_cli.command("event-schema")
def event_schema_command() -> None:
    """Print the JSON Schema of the event stream's lines, generated from the payload schemas."""
    click.echo(event_line_schema_text(), nl=False)
