"""Incident status updates: what responders tell people, rendered from a template.

An update says the status, the impact, the current state and when the next update
is due. Notifier plugins deliver it (``runbook_status_update``) and answer with one
``Delivery`` per destination; ``announce`` does all of that and records it.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from runbook.records import Delivery
from runbook.records import StatusUpdate

if TYPE_CHECKING:
    from runbook.config import Config

#: Minutes until the next update is due, by severity (a common on-call cadence).
UPDATE_MINUTES = {"P0": 15, "P1": 30, "P2": 60, "P3": 240, "P4": 1440}
DEFAULT_MINUTES = 60
DEFAULT_TEMPLATE = "status_update.txt.j2"


def make_update(
    incident: dict[str, Any],
    status: str,
    current_state: str,
    *,
    interval_minutes: float | None = None,
    template: Path | None = None,
    now: float | None = None,
) -> StatusUpdate:
    """Build and render a status update of ``incident`` moving to (or staying at) ``status``."""
    from runbook.timestamps import isotime

    moment = time.time() if now is None else now
    severity = incident.get("severity")
    minutes = interval_minutes or UPDATE_MINUTES.get(str(severity), DEFAULT_MINUTES)
    update = StatusUpdate(
        incident=str(incident["id"]),
        title=str(incident.get("title", "")),
        status=status,
        severity=severity,
        impact=str(incident.get("impact") or ""),
        current_state=current_state,
        sent_at=isotime(moment, precise=True),
        next_update_at=None
        if status == "resolved"
        else isotime(moment + minutes * 60, precise=True),
    )
    return dataclasses.replace(update, text=render(update, template))


def render(update: StatusUpdate, template: Path | None = None) -> str:
    """Render the text of an update with the built-in template or ``template``."""
    from runbook.output.templating import load_template

    return load_template(template, DEFAULT_TEMPLATE).render(update=update).strip() + "\n"


def announce(config: Config, incident: dict[str, Any], status: str, state: str) -> list[Delivery]:
    """Render a status update, hand it to the notifiers, record it; return the deliveries."""
    from runbook.incident.store import IncidentStore

    section = config.values.get("notify", {})
    section = section if isinstance(section, dict) else {}
    template, interval = section.get("template"), section.get("update_interval_minutes")
    update = make_update(
        incident,
        status,
        state,
        interval_minutes=float(interval) if interval else None,
        template=config.path(template) if template else None,
    )
    try:
        groups = config.hook.runbook_status_update(update=update)
    except Exception as exc:  # a broken notifier must not stop the investigation
        groups = [[Delivery("a notifier plugin", False, 1, f"{type(exc).__name__}: {exc}")]]
    deliveries = [delivery for group in groups for delivery in group or ()]
    if deliveries:
        IncidentStore.from_config(config).append(
            update.incident,
            "update",
            f"status update sent: {status} ({delivered(deliveries)})",
            status=status,
            deliveries=[
                {"to": d.destination, "ok": d.ok, "attempts": d.attempts, "error": d.error}
                for d in deliveries
            ],
        )
    return deliveries


def failures(deliveries: list[Delivery], status: str) -> list[str]:
    """Return one warning per delivery that did not get through."""
    return [
        f"status update ({status}) to {d.destination} not delivered after {d.attempts} "
        f"attempt(s): {d.error}"
        for d in deliveries
        if not d.ok
    ]


def delivered(deliveries: list[Delivery]) -> str:
    """Say how many destinations got an update."""
    ok = sum(1 for d in deliveries if d.ok)
    return f"delivered to {ok} of {len(deliveries)}"
