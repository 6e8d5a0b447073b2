"""A blameless post-mortem draft in Markdown, from everything an incident store holds.

Rendered with jinja2 from plain data (the incident, its timeline and the JSON
results of its runs), so a team can replace the template with ``--template``.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from runbook.incident.store import IncidentStore
from runbook.severity import MEANINGS

DEFAULT_TEMPLATE = "postmortem.md.j2"
UNSETTLED = ("inconclusive", "untested")
PROBLEM_OUTCOMES = ("error", "timeout", "blocked")


def render_postmortem(store: IncidentStore, incident_id: str, template: Path | None = None) -> str:
    """Render the post-mortem draft of an incident."""
    from runbook.output.templating import load_template

    incident = store.load(incident_id)
    data = context(
        incident, [e.to_dict() for e in store.events(incident_id)], store.runs(incident_id)
    )
    return load_template(template, DEFAULT_TEMPLATE).render(**data)


def context(
    incident: dict[str, Any], events: list[dict[str, Any]], runs: list[dict[str, Any]]
) -> dict[str, Any]:
    """Turn the store's contents into what the template shows."""
    hypotheses = [(run, h) for run in runs for h in run.get("hypotheses", [])]
    causes = _causes(hypotheses)
    resolved = next(
        (
            e["time"]
            for e in reversed(events)
            if e.get("status") == "resolved" and e["kind"] == "status"
        ),
        None,
    )
    severity = incident.get("severity")
    return {
        "incident": incident,
        "severity_meaning": MEANINGS.get(str(severity), ""),
        "resolved_at": resolved,
        "duration": _duration(incident.get("opened_at"), resolved),
        "runs": runs,
        "runbooks": list(dict.fromkeys(str(run["runbook"]["name"]) for run in runs)),
        "timeline": [[e["time"], e["kind"].replace("_", " "), e["text"]] for e in events],
        "notes": [e for e in events if e["kind"] == "note"],
        "causes": causes,
        "ruled_out": [
            [h["id"], run["runbook"]["name"], h["statement"]]
            for run, h in hypotheses
            if h["status"] == "ruled_out"
        ],
        "unsettled": [
            [h["id"], run["runbook"]["name"], h["status"], h["statement"]]
            for run, h in hypotheses
            if h["status"] in UNSETTLED
        ],
        "actions": [
            [a.get("started_at", ""), a["id"], a["host"], a["status"], a.get("message", "")]
            for run in runs
            for a in run.get("actions", [])
            if a["status"] in ("executed", "failed", "declined")
        ],
        "planned": [
            f"{a['id']} on {a['host']} ({run['runbook']['name']})"
            for run in runs
            for a in run.get("actions", [])
            if a["status"] == "planned"
        ],
        "followups": _followups(causes, hypotheses, runs),
    }


def _causes(hypotheses: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[dict[str, Any]]:
    """Ruled-in hypotheses, one entry per runbook and id, evidence of every run merged."""
    causes: dict[tuple[str, str], dict[str, Any]] = {}
    for run, hypothesis in hypotheses:
        if hypothesis["status"] != "ruled_in":
            continue
        key = (str(run["runbook"]["name"]), str(hypothesis["id"]))
        cause = causes.setdefault(
            key,
            {
                "id": hypothesis["id"],
                "statement": hypothesis["statement"],
                "runbook": key[0],
                "hosts": [],
                "evidence": [],
                "first_seen": run.get("started_at", ""),
            },
        )
        ruled_in = [h for h, s in hypothesis.get("hosts", {}).items() if s == "ruled_in"]
        cause["hosts"] = list(dict.fromkeys([*cause["hosts"], *ruled_in]))
        cause["evidence"] = list(dict.fromkeys([*cause["evidence"], *hypothesis["evidence"]]))
    return list(causes.values())


def _followups(
    causes: list[dict[str, Any]],
    hypotheses: list[tuple[dict[str, Any], dict[str, Any]]],
    runs: list[dict[str, Any]],
) -> dict[str, list[str]]:
    """The checklist: monitoring to add, tests to write, runbook changes."""
    monitoring = [
        f'Alert on "{c["statement"]}" ({c["id"]}) before users notice it.' for c in causes
    ]
    tests = [
        f"Reproduce {c['id']} in a test of runbook `{c['runbook']}`, so its check is proven "
        "against the real fault."
        for c in causes
    ]
    changes = [
        f"`{run['runbook']['name']}`: check `{check['id']}` ended {check['outcome']} on "
        f"{check['host']}: make it conclusive."
        for run in runs
        for check in run.get("checks", [])
        if check["outcome"] in PROBLEM_OUTCOMES
    ]
    changes += [
        f"`{run['runbook']['name']}`: {h['id']} stayed {h['status']}: add or fix the checks "
        "that decide it."
        for run, h in hypotheses
        if h["status"] in UNSETTLED
    ]
    if not causes:
        monitoring.append("Add the signal that would have shown the cause, once it is known.")
        changes.append("No runbook ruled a cause in: add the hypothesis that explains it.")
    changes.append("Turn anything that was done by hand (see the notes) into checks or actions.")
    return {"monitoring": monitoring, "tests": tests, "runbook": list(dict.fromkeys(changes))}


def _duration(start: str | None, end: str | None) -> str:
    if not start or not end:
        return "ongoing"
    parse = datetime.datetime.fromisoformat
    seconds = int((parse(end) - parse(start)).total_seconds())
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h {rest // 60:02d}m" if hours else f"{rest // 60}m {rest % 60:02d}s"
