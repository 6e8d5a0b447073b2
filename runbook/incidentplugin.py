"""Record runs under ``--incident`` into the incident store, and send status updates.

A run under an incident adds to its timeline: the run starting, each hypothesis
ruled in, each action, the run finishing (with its JSON result kept in the store).
Status updates go out at the start of the run, when it first rules a hypothesis
in (the incident becomes *identified*) and after actions ran (*monitoring*).
Statuses only move forward on their own; resolving is the operator's call.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING
from typing import Any

from runbook.hookspec import hookimpl
from runbook.incidents import STATUSES
from runbook.incidents import IncidentStore

if TYPE_CHECKING:
    from runbook.config import Config
    from runbook.results import ActionResult
    from runbook.results import CheckResult
    from runbook.results import HostResult
    from runbook.results import RunResult
    from runbook.runner import Run
    from runbook.statusupdate import Delivery


def store_for(config: Config) -> IncidentStore:
    """Return the incident store under the configured report directory."""
    return IncidentStore(config.report_dir / "incidents")


def announce(config: Config, incident: dict[str, Any], status: str, state: str) -> list[Delivery]:
    """Render a status update, hand it to the notifiers, record it; return the deliveries."""
    from runbook.statusupdate import make_update

    section = config.values.get("notify", {})
    template = section.get("template") if isinstance(section, dict) else None
    interval = section.get("update_interval_minutes") if isinstance(section, dict) else None
    update = make_update(
        incident,
        status,
        state,
        interval_minutes=float(interval) if interval else None,
        template=config.path(template) if template else None,
    )
    groups = config.hook.runbook_status_update(update=update)
    deliveries = [delivery for group in groups for delivery in group or ()]
    if deliveries:
        store_for(config).append(
            update.incident,
            "update",
            f"status update sent: {status} ({_delivered(deliveries)})",
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


def _delivered(deliveries: list[Delivery]) -> str:
    ok = sum(1 for d in deliveries if d.ok)
    return f"delivered to {ok} of {len(deliveries)}"


def later(current: str, proposed: str) -> str:
    """Return ``proposed`` if it is further along than ``current``: no going back on its own."""
    return proposed if STATUSES.index(proposed) > STATUSES.index(current) else current


class IncidentRecorder:
    """Follow one run at a time and write what happens into its incident."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store = store_for(config)
        self._lock = threading.Lock()
        self._reset(None)

    def _reset(self, run: Run | None) -> None:
        self.run = run
        self.incident_id: str | None = run.options.incident if run else None
        self.ruled_in: set[str] = set()
        self.identified = False
        self.executed: list[str] = []
        self.hosts_left = len(run.host_names) if run else 0

    @hookimpl
    def runbook_run_started(self, run: Run) -> None:
        """Open the incident if it is new, record the start and announce it."""
        self._reset(run if run.options.incident else None)
        if self.incident_id is None:
            return
        name, hosts = run.runbook.name, ", ".join(run.host_names)
        if not self.store.exists(self.incident_id):
            self.store.open(
                run.runbook.title,
                severity=run.options.severity,
                operator=run.info.operator,
                incident_id=self.incident_id,
            )
        self.store.append(
            self.incident_id,
            "run_started",
            f"runbook {name} started ({run.mode}) on {hosts} by {run.info.operator}",
            runbook=name,
            mode=run.mode,
            hosts=run.host_names,
            operator=run.info.operator,
        )
        incident = self.store.load(self.incident_id)
        if incident["status"] != "resolved":
            state = f"Investigating with runbook {name} ({run.runbook.title}) on {hosts}."
            self._announce(incident, incident["status"], state)

    @hookimpl
    def runbook_check_finished(self, result: CheckResult) -> None:
        """Record each hypothesis ruled in; the first one marks the incident identified."""
        if self.incident_id is None or self.run is None or result.verdict != "ruled_in":
            return
        statements = {h.id: h.statement for h in self.run.runbook.hypotheses}
        with self._lock:
            new = [h for h in result.tests if h not in self.ruled_in]
            self.ruled_in.update(new)
            first = bool(new) and not self.identified
            self.identified = self.identified or first
        name = self.run.runbook.name
        for hypothesis in new:
            self.store.append(
                self.incident_id,
                "ruled_in",
                f"{name}: {hypothesis} ruled in on {result.host} by {result.check}: "
                f"{result.message}",
                runbook=name,
                hypothesis=hypothesis,
                statement=statements.get(hypothesis, ""),
                host=result.host,
                check=result.check,
                evidence=result.message,
            )
        if first:
            summary = f"{new[0]} ({statements.get(new[0], '')}) ruled in on {result.host}"
            self._move("identified", f"Cause identified: {summary}: {result.message}")

    @hookimpl
    def runbook_action_finished(self, result: ActionResult) -> None:
        """Record every action, planned ones too."""
        if self.incident_id is None or self.run is None:
            return
        name = self.run.runbook.name
        self.store.append(
            self.incident_id,
            "action",
            f"{name}: action {result.action} on {result.host}: "
            f"{result.status.replace('_', ' ')}"
            + (f" ({result.message})" if result.message else ""),
            runbook=name,
            action=result.action,
            host=result.host,
            status=result.status,
            mitigates=list(result.mitigates),
        )
        if result.status == "executed":
            with self._lock:
                self.executed.append(f"{result.action} on {result.host}")

    @hookimpl
    def runbook_host_finished(self, result: HostResult) -> None:
        """Once every target is done and an action ran, the incident is being monitored."""
        if self.incident_id is None:
            return
        with self._lock:
            self.hosts_left -= 1
            done = self.hosts_left == 0 and bool(self.executed)
        if done:
            self._move("monitoring", f"Mitigation applied: {', '.join(self.executed)}.")

    @hookimpl
    def runbook_run_finished(self, result: RunResult) -> None:
        """Keep the run's JSON result in the store and record how it ended."""
        if self.incident_id is None or self.run is None:
            return
        incident_id, name = self.incident_id, str(result.runbook["name"])
        self._reset(None)
        data = result.to_dict()
        path = self.store.save_run(incident_id, name, data)
        ruled_in = [h.id for h in result.hypotheses if h.status == "ruled_in"]
        self.store.append(
            incident_id,
            "run_finished",
            f"runbook {name} finished (exit status {result.exit_code}); ruled in: "
            f"{', '.join(ruled_in) or 'nothing'}",
            runbook=name,
            exit_code=result.exit_code,
            ruled_in=ruled_in,
            result=str(path.relative_to(self.store.folder(incident_id))),
        )
        self._record_severity(incident_id, name, result)

    def _record_severity(self, incident_id: str, name: str, result: RunResult) -> None:
        suggested = result.severity_suggested
        if suggested is None:
            return
        from runbook.incidents import Event
        from runbook.incidents import utcnow

        incident = self.store.load(incident_id)
        if incident.get("severity") is None:
            event = Event(
                utcnow(),
                "severity",
                f"severity {suggested}, suggested by {name}",
                {"severity": suggested, "set_by": f"runbook {name}"},
            )
            self.store.update(
                incident_id, event, severity=suggested, severity_set_by=f"runbook {name}"
            )
        elif incident["severity"] != suggested:
            self.store.append(
                incident_id,
                "severity_suggested",
                f"{name} suggests {suggested}; the incident stays {incident['severity']} "
                f"(set by {incident.get('severity_set_by') or 'operator'})",
                severity=suggested,
                runbook=name,
            )

    def _move(self, status: str, state: str) -> None:
        """Move the incident forward to ``status`` (if it is not further yet) and announce."""
        from runbook.incidents import Event
        from runbook.incidents import utcnow

        if self.incident_id is None:
            return
        incident = self.store.load(self.incident_id)
        if incident["status"] == "resolved":
            return
        new = later(incident["status"], status)
        if new != incident["status"]:
            event = Event(utcnow(), "status", f"status: {new}", {"status": new, "by": "runbook"})
            incident = self.store.update(self.incident_id, event, status=new)
        self._announce(incident, new, state)

    def _announce(self, incident: dict[str, Any], status: str, state: str) -> None:
        deliveries = announce(self.config, incident, status, state)
        if self.run is not None:
            self.run.warnings.extend(failures(deliveries, status))


@hookimpl
def runbook_configure(config: Config) -> None:
    """Register the incident recorder for this configuration."""
    config.pluginmanager.register(IncidentRecorder(config), "incident-recorder")
