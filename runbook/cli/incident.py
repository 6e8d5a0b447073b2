"""``runbook incident open|note|status|severity|show|list`` and ``runbook postmortem``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from runbook.cli import write_rendered
from runbook.outcomes import ExitCode
from runbook.severity import SEVERITIES

if TYPE_CHECKING:
    from runbook.incident.store import IncidentStore

STATUS_CHOICES = ("investigating", "identified", "monitoring", "resolved")
DEFAULT_STATES = {
    "investigating": "Investigating the cause.",
    "identified": "The cause is identified; working on a fix.",
    "monitoring": "A fix is in place; watching that it holds.",
    "resolved": "Resolved.",
}


def _store() -> IncidentStore:
    from runbook.incident.store import IncidentStore
    from runbook.pluginmanager import load_config

    return IncidentStore.from_config(load_config())


def _operator() -> str:
    from runbook.engine.runner import default_operator

    return default_operator()


def _clean(text: str) -> str:
    """Redact well-known secret shapes from what an operator typed."""
    from runbook.safety.redact import Redactor

    return Redactor().text(text)


@click.group(short_help="Open an incident, add notes, set its status, show its timeline.")
def incident() -> None:
    """Open an incident, add notes, move its status and read its timeline.

    \b
    Examples:
      runbook incident open "Checkout errors" --severity P1
      runbook run high-error-rate --incident INC-20261124-001
      runbook incident note INC-20261124-001 "rolled back deploy 4711"
      runbook incident status INC-20261124-001 resolved
      runbook postmortem INC-20261124-001 -o postmortem.md
    """


@incident.command(name="open")
@click.argument("title")
@click.option(
    "--severity", type=click.Choice(SEVERITIES), help="P0 (outage) .. P4 (informational)."
)
@click.option("--impact", default="", help="Who is affected and how, for status updates.")
@click.option("--id", "incident_id", metavar="ID", help="Use this id instead of a new one.")
def open_(title: str, severity: str | None, impact: str, incident_id: str | None) -> int:
    """Open an incident titled TITLE and print its new ID."""
    operator = _operator()
    created = _store().open(
        _clean(title),
        severity=severity,
        impact=_clean(impact),
        operator=operator,
        incident_id=incident_id,
        set_by=f"operator {operator}",
    )
    click.echo(created["id"])
    return ExitCode.OK


@incident.command()
@click.argument("incident_id", metavar="ID")
@click.argument("words", nargs=-1, required=True, metavar="TEXT")
def note(incident_id: str, words: tuple[str, ...]) -> int:
    """Add TEXT to the timeline of incident ID."""
    operator = _operator()
    event = _store().append(
        incident_id, "note", f"{_clean(' '.join(words))} ({operator})", by=operator
    )
    click.echo(f"{incident_id}: noted at {event.time}")
    return ExitCode.OK


@incident.command()
@click.argument("incident_id", metavar="ID")
@click.argument("status", type=click.Choice(STATUS_CHOICES))
@click.option("-m", "--message", help="The current state, for the status update.")
def status(incident_id: str, status: str, message: str | None) -> int:
    """Set the status of incident ID and send a status update."""
    from runbook.cli import open_session
    from runbook.incident.statusupdate import announce
    from runbook.incident.statusupdate import failures
    from runbook.incident.store import Event
    from runbook.incident.store import IncidentStore
    from runbook.timestamps import isotime

    config = open_session().config  # with every plugin: third-party notifiers too
    store = IncidentStore.from_config(config)
    operator = _operator()
    now = isotime(precise=True)
    text = f"status: {status}" + (f": {_clean(message)}" if message else "") + f" ({operator})"
    changes = {"status": status, "resolved_at": now if status == "resolved" else None}
    current = store.update(
        incident_id, Event(now, "status", text, {"status": status, "by": operator}), **changes
    )
    click.echo(f"{incident_id}: {status}")
    deliveries = announce(config, current, status, _clean(message or DEFAULT_STATES[status]))
    for warning in failures(deliveries, status):
        click.echo(f"warning: {warning}", err=True)
    return ExitCode.OK


@incident.command(short_help="Set the severity of incident ID (P0..P4).")
@click.argument("incident_id", metavar="ID")
@click.argument("severity", type=click.Choice(SEVERITIES))
def severity(incident_id: str, severity: str) -> int:
    """Set the severity of incident ID: P0 (outage) .. P4 (informational)."""
    from runbook.incident.store import Event
    from runbook.timestamps import isotime

    operator = _operator()
    event = Event(
        isotime(precise=True),
        "severity",
        f"severity {severity} ({operator})",
        {"severity": severity, "set_by": f"operator {operator}"},
    )
    _store().update(incident_id, event, severity=severity, severity_set_by=f"operator {operator}")
    click.echo(f"{incident_id}: {severity}")
    return ExitCode.OK


@incident.command()
@click.argument("incident_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the incident and events as JSON.")
def show(incident_id: str, as_json: bool) -> int:
    """Print incident ID and its merged timeline (UTC)."""
    store = _store()
    current = store.load(incident_id)
    events = store.events(incident_id)
    if as_json:
        data = {**current, "events": [e.to_dict() for e in events]}
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return ExitCode.OK
    severity = current.get("severity") or "severity not set"
    set_by = f", set by {current['severity_set_by']}" if current.get("severity_set_by") else ""
    click.echo(f"{current['id']}: {current['title']}")
    click.echo(f"{severity}{set_by} · {current['status']} · opened {current['opened_at']}")
    if current.get("impact"):
        click.echo(f"impact: {current['impact']}")
    click.echo("")
    width = max((len(e.kind) for e in events), default=0)
    for event in events:
        click.echo(f"{event.time}  {event.kind.ljust(width)}  {event.text}")
    return ExitCode.OK


@incident.command(name="list")
def list_() -> int:
    """List the incidents in the store, newest first."""
    store = _store()
    folders = (
        sorted(store.root.glob("*/incident.json"), reverse=True) if store.root.is_dir() else []
    )
    for path in folders:
        item = store.load(path.parent.name)
        click.echo(
            f"{item['id']}  {item.get('severity') or '--'}  {item['status']:<13}  {item['title']}"
        )
    if not folders:
        click.echo("no incidents")
    return ExitCode.OK


@click.command(short_help="Write a blameless post-mortem draft of incident ID.")
@click.argument("incident_id", metavar="ID")
@click.option("-o", "--output", metavar="PATH", help="Write here instead of standard output.")
@click.option(
    "--template",
    type=click.Path(exists=True, dir_okay=False),
    help="A jinja2 template to render instead of the built-in one.",
)
def postmortem(incident_id: str, output: str | None, template: str | None) -> int:
    """Render a blameless post-mortem draft of incident ID in Markdown."""
    from runbook.incident.postmortem import render_postmortem

    store = _store()
    write_rendered(
        lambda chosen: render_postmortem(store, incident_id, chosen),
        template,
        output,
        "post-mortem",
    )
    return ExitCode.OK
