"""Record runs under ``--incident`` into the incident store, and send status updates.

A run under an incident adds to its timeline: the run starting, each hypothesis
ruled in, each action, the run finishing (with its JSON result kept in the store).
Status updates go out at the start of the run, when it first rules a hypothesis
in (the incident becomes *identified*) and after actions ran (*monitoring*).
Statuses only move forward on their own; resolving is the operator's call.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING
from typing import Any

from runbook.incident.store import STATUSES
from runbook.incident.store import IncidentStore
from runbook.markers import hookimpl
from runbook.outcomes import UsageError

if TYPE_CHECKING:
    from runbook.config import Config
    from runbook.records import RunStart
    from runbook.results import ActionResult
    from runbook.results import CheckResult
    from runbook.results import HostResult
    from runbook.results import RunResult


def later(current: str, proposed: str) -> str:
    """Return ``proposed`` if it is further along than ``current``: no going back on its own."""
    return proposed if STATUSES.index(proposed) > STATUSES.index(current) else current


class IncidentRecorder:
    """Follow one run at a time and write what happens into its incident."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store = IncidentStore.from_config(config)
        self._lock = threading.Lock()
        self._reset(None)

    def _reset(self, run: RunStart | None) -> None:
        self.run = run
        self.incident_id: str | None = run.info.incident if run else None
        self.ruled_in: set[str] = set()
        self.identified = False
        self.executed: list[str] = []
        self.hosts_left = len(run.hosts) if run else 0
        self.updates: list[str] = []

    @contextlib.contextmanager
    def _recording(self, run: RunStart | None = None) -> Iterator[None]:
        """Keep investigating when the incident cannot be written (a full disk, say)."""
        run = run or self.run
        try:
            yield
        except (OSError, UsageError) as exc:
            warning = f"incident {self.incident_id or ''} not recorded: {exc}"
            if run is None:
                sys.stderr.write(f"warning: {warning}\n")
            else:
                run.warn(warning)

    @hookimpl
    def runbook_run_started(self, run: RunStart) -> None:
        """Open the incident if it is new, record the start and announce it."""
        self._reset(run if run.info.incident else None)
        if self.incident_id is not None:
            with self._recording():
                self._started(run, self.incident_id)

    def _started(self, run: RunStart, incident_id: str) -> None:
        name, hosts = run.runbook.name, ", ".join(run.hosts)
        if not self.store.exists(incident_id):
            self.store.open(
                run.runbook.title,
                severity=run.info.severity,
                operator=run.info.operator,
                incident_id=incident_id,
                set_by=f"operator {run.info.operator}",
            )
        self.store.append(
            incident_id,
            "run_started",
            f"runbook {name} started ({run.mode}) on {hosts} by {run.info.operator}",
            runbook=name,
            mode=run.mode,
            hosts=run.hosts,
            operator=run.info.operator,
        )
        incident = self.store.load(incident_id)
        if incident["status"] != "resolved":
            state = f"Investigating with runbook {name} ({run.runbook.title}) on {hosts}."
            self._announce(incident, incident["status"], state)

    @hookimpl
    def runbook_check_finished(self, result: CheckResult) -> None:
        """Record each hypothesis ruled in; the first one marks the incident identified."""
        if self.incident_id is not None and self.run is not None and result.verdict == "ruled_in":
            with self._recording():
                self._ruled_in(self.run, self.incident_id, result)

    def _ruled_in(self, run: RunStart, incident_id: str, result: CheckResult) -> None:
        statements = {h.id: h.statement for h in run.runbook.hypotheses}
        with self._lock:
            new = [h for h in result.tests if h not in self.ruled_in]
            self.ruled_in.update(new)
            first = bool(new) and not self.identified
            self.identified = self.identified or first
        name = run.runbook.name
        for hypothesis in new:
            self.store.append(
                incident_id,
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
        if self.incident_id is not None and self.run is not None:
            with self._recording():
                self._action(self.run, self.incident_id, result)

    def _action(self, run: RunStart, incident_id: str, result: ActionResult) -> None:
        name = run.runbook.name
        self.store.append(
            incident_id,
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
            with self._recording():
                self._move("monitoring", f"Mitigation applied: {', '.join(self.executed)}.")

    @hookimpl
    def runbook_run_finished(self, result: RunResult) -> None:
        """Keep the run's JSON result in the store and record how it ended."""
        if self.incident_id is None or self.run is None:
            return
        incident_id, run = self.incident_id, self.run
        self._reset(None)
        with self._recording(run):
            self._finished(incident_id, result)

    def _finished(self, incident_id: str, result: RunResult) -> None:
        name = str(result.runbook["name"])
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
        from runbook.incident.store import Event
        from runbook.timestamps import isotime

        incident = self.store.load(incident_id)
        if incident.get("severity") is None:
            event = Event(
                isotime(precise=True),
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
        from runbook.incident.store import Event
        from runbook.timestamps import isotime

        if self.incident_id is None:
            return
        incident = self.store.load(self.incident_id)
        if incident["status"] == "resolved":
            return
        new = later(incident["status"], status)
        if new != incident["status"]:
            event = Event(
                isotime(precise=True), "status", f"status: {new}", {"status": new, "by": "runbook"}
            )
            incident = self.store.update(self.incident_id, event, status=new)
        self._announce(incident, new, state)

    def _announce(self, incident: dict[str, Any], status: str, state: str) -> None:
        from runbook.incident.statusupdate import announce
        from runbook.incident.statusupdate import delivered
        from runbook.incident.statusupdate import failures

        deliveries = announce(self.config, incident, status, state)
        if deliveries:
            self.updates.append(f"{status} ({delivered(deliveries)})")
        if self.run is not None:
            for warning in failures(deliveries, status):
                self.run.warn(warning)

    @hookimpl
    def runbook_report_sections(self, result: RunResult) -> list[tuple[str, str]] | None:
        """Say which incident the run belongs to, and the status updates it sent."""
        if self.incident_id is None or result.incident != self.incident_id:
            return None
        incident_id = self.incident_id
        with self._recording():
            incident = self.store.load(incident_id)
            lines = [
                f"This run is part of incident **{incident_id}** ({incident['title']}), "
                f"status *{incident['status']}*.",
                f"Status updates sent: {', '.join(self.updates) or 'none'}.",
                f"Timeline: `runbook incident show {incident_id}`; post-mortem draft: "
                f"`runbook postmortem {incident_id}`.",
            ]
            return [("Incident", "\n\n".join(lines))]
        return None


@hookimpl
def runbook_configure(config: Config) -> None:
    """Register the incident recorder for this configuration."""
    config.pluginmanager.register(IncidentRecorder(config), "incident-recorder")
