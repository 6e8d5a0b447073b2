"""A runbook's reference page in Markdown: what ``runbook show --markdown`` prints.

The pages of the built-in library under ``docs/library/`` are generated with it,
and a test keeps them identical to what the runbooks say of themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runbook.output.templating import markdown_table
from runbook.params import param_type
from runbook.params import shown_default

if TYPE_CHECKING:
    from runbook.model import Runbook


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


def markdown_page(runbook: Runbook) -> str:
    """Return the reference page of ``runbook``: symptoms, hypotheses, checks, actions, params."""
    lines = [f"# {runbook.name}: {runbook.title}", ""]
    facts = [f"`runbook run {runbook.name}`"]
    if runbook.tags:
        facts.append("tags: " + ", ".join(runbook.tags))
    if runbook.severity:
        facts.append(f"severity: {runbook.severity}")
    lines += [" · ".join(facts), ""]
    if runbook.description:
        lines += [runbook.description, ""]
    hypotheses = [
        [f"`{h.id}`", h.statement, ", ".join(c.id for c in runbook.checks if h in c.tests) or "-"]
        for h in runbook.hypotheses
    ]
    lines += ["## Hypotheses", "", markdown_table(hypotheses, ["id", "statement", "tested by"])]
    checks = [
        [
            f"`{c.id}`",
            ", ".join(h.id for h in c.tests) or "symptom",
            _first_line(c.doc)
            + (f" (after {c.spec.needs.id} is ruled in)" if c.spec.needs else ""),
        ]
        for c in runbook.checks
    ]
    lines += ["", "## Checks, in order", "", markdown_table(checks, ["check", "tests", "what"])]
    lines += ["", "## Actions (only with `--execute`)", ""]
    if runbook.actions:
        actions = [
            [f"`{a.id}`", ", ".join(h.id for h in a.spec.mitigates), _first_line(a.doc)]
            for a in runbook.actions
        ]
        lines.append(markdown_table(actions, ["action", "mitigates", "what"]))
    else:
        lines.append("None.")
    if runbook.params:
        secret = set(runbook.secrets)
        params = [
            [f"`{k}`", param_type(v).__name__, "***" if k in secret else shown_default(v)]
            for k, v in runbook.params.items()
        ]
        lines += ["", "## Parameters (`--param KEY=VALUE`)", ""]
        lines.append(markdown_table(params, ["name", "type", "default"]))
    return "\n".join(lines) + "\n"
