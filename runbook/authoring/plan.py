"""The plan of a dry run: what a run would do, worked out without contacting any target.

``run --dry-run`` prepares a run as usual (parameters coerced, fixtures and
targets resolved, checks selected), lints the runbook, and turns all that into
a ``Plan``: printed on the terminal, written as Markdown and as JSON (schema
``runbook.plan/1``). No backend connects and no check body runs.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from runbook.engine.runner import make_backend
from runbook.files import write_private
from runbook.hosts.host import host_name
from runbook.outcomes import ExitCode
from runbook.output.stepsummary import append_step_summary
from runbook.output.templating import markdown_table

if TYPE_CHECKING:
    from runbook.authoring.lint import Finding
    from runbook.config import Config
    from runbook.engine.runner import Run
    from runbook.model import ActionItem
    from runbook.model import CheckItem
    from runbook.records import RunOptions
    from runbook.records import Target

SCHEMA = "runbook.plan/1"


@dataclasses.dataclass(frozen=True, slots=True)
class PlannedHost:
    """A target as the run would reach it."""

    name: str
    uri: str


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """What one runbook's run would do, and what lint found in it."""

    runbook: dict[str, str]
    mode: str
    hosts: tuple[PlannedHost, ...]
    checks: tuple[dict[str, Any], ...]
    deselected: tuple[str, ...]
    actions: tuple[dict[str, Any], ...]
    hypotheses: tuple[dict[str, Any], ...]
    params: dict[str, Any]
    findings: tuple[Finding, ...]
    report: str | None = None
    json: str | None = None

    @property
    def preview(self) -> str:
        """The safety preview: how many checks on how many hosts, and what may change."""
        hosts = len(self.hosts)
        actions = ", ".join(a["id"] for a in self.actions) or "none"
        gate = "gated by --execute and confirmation"
        if self.mode == "execute":
            confirmed = any(a["confirm"] for a in self.actions)
            gate = "gated by confirmation" if confirmed else "run without confirmation"
        return (
            f"{len(self.checks)} read-only checks on {hosts} host{'s' if hosts != 1 else ''}; "
            f"{len(self.actions)} actions that change state ({actions}), {gate}"
        )

    @property
    def exit_code(self) -> ExitCode:
        """1 with lint findings, 5 with no check selected, else 0."""
        if not self.checks:
            return ExitCode.NO_CHECKS
        return ExitCode.FINDINGS if self.findings else ExitCode.OK

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON plan, schema ``runbook.plan/1``."""
        ids = [c["id"] for c in self.checks]
        return {
            "schema": SCHEMA,
            "runbook": self.runbook,
            "mode": "dry-run",
            "planned_mode": self.mode,
            "preview": self.preview,
            "exit_code": int(self.exit_code),
            "params": self.params,
            "hosts": [{"name": h.name, "uri": h.uri, "checks": ids} for h in self.hosts],
            "checks": list(self.checks),
            "deselected": list(self.deselected),
            "hypotheses": list(self.hypotheses),
            "actions": list(self.actions),
            "findings": [finding.to_dict() for finding in self.findings],
            "report": self.report,
        }


def resolve_hosts(config: Config, targets: Sequence[Target]) -> tuple[PlannedHost, ...]:
    """Find the backend of every target, as a run would, without connecting to any."""
    hosts = []
    for target in targets:
        backend = make_backend(config, target)
        hosts.append(PlannedHost(host_name(target, backend), backend.uri))
        backend.close()  # never connected: this releases nothing on the target
    return tuple(hosts)


def build_plan(
    run: Run, hosts: Sequence[PlannedHost], findings: Sequence[Finding], yes: bool = False
) -> Plan:
    """Describe what ``run`` (prepared, not executed) would do on ``hosts``."""
    runbook = run.runbook
    selected = {item.id for item in run.checks}
    return Plan(
        runbook={
            "name": runbook.name,
            "title": runbook.title,
            "source": runbook.source,
            "path": str(runbook.path),
        },
        mode=run.mode,
        hosts=tuple(hosts),
        checks=tuple(_check(item, run.options) for item in run.checks),
        deselected=tuple(c.id for c in runbook.checks if c.id not in selected),
        actions=tuple(_action(item, run.mode, yes) for item in runbook.actions),
        hypotheses=tuple(
            {
                "id": h.id,
                "statement": h.statement,
                "checks": [c.id for c in run.checks if h in c.tests],
            }
            for h in runbook.hypotheses
        ),
        params=run.context.params.redacted(),
        findings=tuple(findings),
        report=run.options.report,
        json=run.options.json,
    )


def _check(item: CheckItem, options: RunOptions) -> dict[str, Any]:
    return {
        "id": item.id,
        "tests": [h.id for h in item.tests],
        "needs": item.spec.needs.id if item.spec.needs else None,
        "timeout_s": options.timeout_for(item.spec.timeout),
        "summary": item.doc.splitlines()[0] if item.doc else "",
    }


def _action(item: ActionItem, mode: str, yes: bool) -> dict[str, Any]:
    mitigates = [h.id for h in item.spec.mitigates]
    when = f"when {' or '.join(mitigates) or 'a hypothesis it mitigates'} is ruled in on that host"
    confirm = item.spec.confirm and not yes
    asked = "after confirmation" if confirm else "without confirmation"
    if mode == "execute":
        gating = f"runs {when}, {asked}"
    else:
        gating = f"planned only: runs with --execute {when}, after confirmation"
    return {"id": item.id, "mitigates": mitigates, "confirm": confirm, "gating": gating}


def render_text(plan: Plan) -> list[str]:
    """Return the terminal lines of a plan: preview, hosts, checks, actions, findings."""
    lines = [f"{plan.runbook['name']}: {plan.preview}"]
    hosts = ", ".join(h.name if h.name == h.uri else f"{h.name} ({h.uri})" for h in plan.hosts)
    lines.append(f"  on each host, in order: {hosts}")
    for check in plan.checks:
        tests = ", ".join(check["tests"]) or "symptom"
        needs = f" (only after {check['needs']} is ruled in)" if check["needs"] else ""
        lines.append(f"  check  {check['id']} [{tests}]{needs}")
    if plan.deselected:
        lines.append(f"  deselected by -k: {', '.join(plan.deselected)}")
    for action in plan.actions:
        mitigates = ", ".join(action["mitigates"]) or "nothing"
        lines.append(f"  action {action['id']} [mitigates {mitigates}]: {action['gating']}")
    for finding in plan.findings:
        lines.append(f"  lint   {finding.location}: {finding.rule}: {finding.message}")
    return lines


def render_markdown(plan: Plan) -> str:
    """Return the plan as a Markdown document."""
    name, title = plan.runbook["name"], plan.runbook["title"]
    summary = [
        ["runbook", f"{name} ({plan.runbook['source']})"],
        ["mode", f"{plan.mode} (dry run: no target contacted, nothing ran)"],
        ["targets", ", ".join(f"{h.name} ({h.uri})" for h in plan.hosts)],
    ]
    if plan.params:
        summary.append(["parameters", ", ".join(f"{k}={v}" for k, v in plan.params.items())])
    checks = [
        [
            index,
            c["id"],
            ", ".join(c["tests"]) or "symptom",
            f"{c['needs']} ruled in" if c["needs"] else "",
            f"{c['timeout_s']:g}s",
            c["summary"],
        ]
        for index, c in enumerate(plan.checks, start=1)
    ]
    parts = [
        f"# Plan: {title or name}",
        f"**{plan.preview}**",
        markdown_table(summary, ["", ""]),
        "## Checks (on every host, in this order)",
        markdown_table(checks, ["#", "check", "tests", "needs", "timeout", "what it checks"])
        if checks
        else "No check selected.",
    ]
    if plan.deselected:
        parts.append(f"Deselected by `-k`: {', '.join(plan.deselected)}")
    hypotheses = [
        [f"**{h['id']}**: {h['statement']}", ", ".join(h["checks"]) or "no check selected"]
        for h in plan.hypotheses
    ]
    parts += ["## Hypotheses", markdown_table(hypotheses, ["hypothesis", "tested by"])]
    actions = [[a["id"], ", ".join(a["mitigates"]), a["gating"]] for a in plan.actions]
    parts += [
        "## Actions",
        markdown_table(actions, ["action", "mitigates", "gating"]) if actions else "None.",
        "## Lint",
    ]
    if plan.findings:
        rows = [[f.location, f.rule, f.message] for f in plan.findings]
        parts.append(markdown_table(rows, ["where", "rule", "finding"]))
    else:
        parts.append("No findings.")
    return "\n\n".join(parts) + "\n"


def render_json(plan: Plan) -> str:
    """Return the JSON plan as text."""
    return json.dumps(plan.to_dict(), indent=2, ensure_ascii=False) + "\n"


def write_plan(plan: Plan) -> list[tuple[str, str]]:
    """Write the Markdown and JSON plan where the plan says (``-``: standard output).

    The Markdown plan is also appended to ``$GITHUB_STEP_SUMMARY`` when that is
    set. Return ``(label, path)`` of the files written, for the terminal.
    """
    markdown = render_markdown(plan)
    written = []
    for label, path, text in (("plan", plan.report, markdown), ("json", plan.json, None)):
        if path is None:
            continue
        text = render_json(plan) if text is None else text
        if path == "-":
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            write_private(Path(path), text)
            written.append((label, path))
    append_step_summary(markdown)
    return written
