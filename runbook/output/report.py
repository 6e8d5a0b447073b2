"""The Markdown incident report, rendered with jinja2 from the JSON result.

Rendering from the JSON shape (not from live objects) means ``runbook report
RESULT.json`` re-renders exactly what a run would have written.
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any
from urllib.parse import urlsplit

from runbook.files import write_private
from runbook.markers import hookimpl
from runbook.output.stepsummary import VARIABLE as STEP_SUMMARY
from runbook.output.stepsummary import append_step_summary
from runbook.output.templating import ACTION_WORDS
from runbook.output.templating import STATUS_WORDS
from runbook.output.templating import load_template
from runbook.params import NEEDS_MESSAGE

if TYPE_CHECKING:
    from runbook.results import RunResult

SEVERITY_SOURCES = {
    "operator": "the operator",
    "runbook": "the runbook, from its findings",
    "default": "the runbook's default",
}
DEFAULT_TEMPLATE = "report.md.j2"


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}s"


def _mode(data: dict[str, Any]) -> str:
    replay = data.get("replay")
    if replay:
        return f"replay of cassette {replay} ({data.get('mode')}, no target contacted)"
    return str(data.get("mode"))


def _context(data: dict[str, Any]) -> dict[str, Any]:
    """Turn a JSON result into the rows and words the template shows."""
    several = len(data.get("hosts", [])) > 1
    checks = data.get("checks", [])
    hypotheses = data.get("hypotheses", [])
    actions = data.get("actions", [])
    runbook = data.get("runbook", {})
    summary = [
        ["runbook", f"{runbook.get('name')} ({runbook.get('source', '')})".strip()],
        ["incident", data.get("incident") or "none"],
        ["severity", _severity(data)],
        ["mode", _mode(data)],
        ["operator", data.get("operator")],
        ["targets", _targets(data.get("hosts", []))],
        ["started", data.get("started_at")],
        ["finished", data.get("finished_at")],
        ["duration", _seconds(data.get("duration_s"))],
        ["exit status", data.get("exit_code")],
    ]
    params = ", ".join(
        f"{key}={'(not given)' if value is None else value}"
        for key, value in data.get("params", {}).items()
    )
    return {
        "parameters": _wrap(f"Parameters: {params}") if params else "",
        "findings": _findings(hypotheses, actions, several),
        "runbook": runbook,
        "interrupted": data.get("interrupted", False),
        "summary": summary,
        "symptoms": [
            [c["id"], c["host"], c["outcome"], c["message"] or "-"]
            for c in checks
            if not c.get("tests")
        ],
        "hypotheses": [
            [
                f"**{h['id']}**: {h['statement']}",
                STATUS_WORDS.get(h["status"], h["status"]),
                _hosts(h, several),
                "; ".join(h.get("evidence", [])) or "-",
            ]
            for h in hypotheses
        ],
        "checks": [
            [c["id"], c["host"], c["outcome"], _seconds(c.get("duration_s")), c["message"] or ""]
            for c in checks
        ],
        "actions": [
            [a["id"], a["host"], ACTION_WORDS.get(a["status"], a["status"]), a["message"]]
            for a in actions
        ],
        "timeline": _timeline(data),
        "evidence": [
            {"check": c["id"], "host": c["host"], **item}
            for c in (*checks, *actions)
            for item in c.get("evidence", [])
        ],
        "commands": [
            [
                c.get("started_at", ""),
                c["host"],
                c["check"],
                f"`{c['command']}`",
                "" if c["exit_status"] is None else c["exit_status"],
                _seconds(c.get("duration_s")),
                "yes: " + (c.get("reason") or "") if c["blocked"] else "",
            ]
            for c in data.get("commands", [])
        ],
        "sections": data.get("sections", []),
        "extensions": data.get("read_only_extensions", []),
        "warnings": data.get("warnings", []),
        "ruled_in": [h["id"] for h in hypotheses if h["status"] == "ruled_in"],
        "planned": _planned(actions),
    }


#: Width the report's own lines keep to (its summary, findings and parameters).
LINE_WIDTH = 100


def _wrap(text: str, indent: str = "") -> str:
    return textwrap.fill(
        text, LINE_WIDTH, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False
    )


def _targets(hosts: list[dict[str, Any]]) -> str:
    """Each target with the machine it is (``local`` is this machine: say which) and status."""
    shown = []
    for host in hosts:
        machine = urlsplit(host.get("uri") or "").hostname
        where = f"{machine}, " if machine and machine != host["name"] else ""
        shown.append(f"{host['name']} ({where}{host['status']})")
    text = ", ".join(shown)
    if len(text) <= LINE_WIDTH - 16:
        return text
    failed = [f"{host['name']} ({host['status']})" for host in hosts if host["status"] != "ok"]
    text = f"{len(hosts)} targets, {len(hosts) - len(failed)} ok"
    if failed:
        more = f" and {len(failed) - 3} more" if len(failed) > 3 else ""
        text += f"; not ok: {', '.join(failed[:3])}{more}"
    return text


def _findings(
    hypotheses: list[dict[str, Any]], actions: list[dict[str, Any]], several: bool
) -> list[str]:
    """First things first: what is wrong, where, the evidence, and what to do."""
    lines = []
    for item in hypotheses:
        if item["status"] == "ruled_in":
            where = f" ({_hosts(item, several)})" if several else ""
            evidence = "; ".join(item.get("evidence", [])) or "no message"
            lines.append(f"**{item['id']}** is ruled in{where}: {evidence}")
    planned = _planned(actions)
    if planned:
        lines.append(f"**To do**: {', '.join(planned)} (planned; `--execute` runs them)")
    return [_wrap(f"- {line}", "  ") for line in lines]


def _planned(actions: list[dict[str, Any]]) -> list[str]:
    """Each planned action once, with the parameters it still needs from the operator."""
    shown: dict[str, str] = {}
    for action in actions:
        if action["status"] == "planned":
            needs = NEEDS_MESSAGE.findall(action.get("message") or "")
            shown[action["id"]] = action["id"] + (f" ({'; '.join(needs)})" if needs else "")
    return list(shown.values())


def _severity(data: dict[str, Any]) -> str:
    """The severity, who set it, and what the findings suggested if that differs."""
    severity, source = data.get("severity"), data.get("severity_source")
    suggested = data.get("severity_suggested")
    text = severity or "not set"
    if severity and source:
        text += f" (set by {SEVERITY_SOURCES.get(source, source)})"
    if suggested and suggested != severity:
        text += f"; the findings suggest {suggested}"
    return text


def _hosts(hypothesis: dict[str, Any], several: bool) -> str:
    hosts = hypothesis.get("hosts", {})
    if not several:
        return ", ".join(hosts)
    ruled_in = [name for name, status in hosts.items() if status == "ruled_in"]
    if ruled_in:
        return "ruled in on " + ", ".join(ruled_in)
    return ", ".join(f"{name}: {STATUS_WORDS.get(s, s)}" for name, s in hosts.items())


def _timeline(data: dict[str, Any]) -> list[list[str]]:
    events = [[data.get("started_at", ""), f"run started ({data.get('mode')})"]]
    for check in data.get("checks", []):
        verdict = f", {check['verdict'].replace('_', ' ')}" if check.get("verdict") else ""
        tests = f" [{', '.join(check['tests'])}]" if check.get("tests") else " [symptom]"
        events.append(
            [
                check.get("started_at", ""),
                f"check {check['id']} on {check['host']}{tests}: {check['outcome']}{verdict}",
            ]
        )
    for action in data.get("actions", []):
        status = ACTION_WORDS.get(action["status"], action["status"])
        events.append(
            [action.get("started_at", ""), f"action {action['id']} on {action['host']}: {status}"]
        )
    ending = "run interrupted" if data.get("interrupted") else "run finished"
    events.append([data.get("finished_at", ""), f"{ending} (exit status {data.get('exit_code')})"])
    return events


def render_markdown(data: dict[str, Any], template: Path | None = None) -> str:
    """Render the Markdown report for a JSON result, with an optional custom template."""
    return load_template(template, DEFAULT_TEMPLATE).render(result=data, **_context(data))


@hookimpl
def runbook_run_finished(result: RunResult) -> None:
    """Write the Markdown report where the run says (``-`` for standard output).

    With ``$GITHUB_STEP_SUMMARY`` set, the report is appended to that file too.
    """
    summary = os.environ.get(STEP_SUMMARY)
    if result.report is None and not summary:
        return
    text = render_markdown(result.to_dict())
    if summary:
        append_step_summary(text)
    if result.report is None:
        return
    if result.report == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_private(Path(result.report), text)
