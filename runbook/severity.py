"""Incident severity: the P0..P4 scale, runbook suggestions and who set the final value."""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any
from typing import Literal

#: The scale, most severe first, with the usual meaning of each level.
MEANINGS = {
    "P0": "complete outage or data loss",
    "P1": "major feature unavailable or many users affected",
    "P2": "partial degradation, a workaround exists",
    "P3": "minor impact, few users affected",
    "P4": "informational, no user impact",
}
SEVERITIES = tuple(MEANINGS)

#: Who set a run's final severity.
Source = Literal["operator", "runbook", "default"]


def is_severity(value: object) -> bool:
    """True for one of ``P0``..``P4``."""
    return isinstance(value, str) and value in MEANINGS


def most_severe(values: Iterable[Any]) -> str | None:
    """Return the most severe of ``values`` (P0 beats P4); other values are ignored."""
    found = [value for value in values if is_severity(value)]
    return min(found) if found else None


def severity_from_findings(
    result: Any,
    by_hypothesis: Mapping[str, str],
    *,
    symptom_only: str | None = None,
    also: Iterable[str] = (),
) -> str | None:
    """The severity a run's findings suggest, by the built-in runbooks' convention.

    The most severe of the levels of the ruled-in hypotheses (``by_hypothesis``)
    and of ``also``; one level less when a symptom check ran and none confirmed the
    symptom. Nothing ruled in: ``symptom_only`` if a symptom check confirmed the
    symptom, else None. For a ``runbook_suggest_severity`` implementation.
    """
    symptoms = [check.outcome for check in result.checks if not check.tests]
    ruled_in = [h.id for h in result.hypotheses if h.status == "ruled_in"]
    level = most_severe([*(by_hypothesis.get(id_) for id_ in ruled_in), *also])
    if level is None:
        return symptom_only if "failed" in symptoms else None
    if "passed" in symptoms and "failed" not in symptoms:
        return f"P{min(int(level[1]) + 1, 4)}"
    return level


def has_findings(result: Any) -> bool:
    """True when a run found something: a hypothesis ruled in, or a symptom check failed."""
    return any(h.status == "ruled_in" for h in result.hypotheses) or any(
        check.outcome == "failed" and not check.tests for check in result.checks
    )


def decide(
    operator: str | None, suggested: str | None, default: str | None, *, found: bool = True
) -> tuple[str | None, Source | None]:
    """Pick the final severity and its source: the operator, else the findings, else the hint.

    ``operator`` comes from ``--severity`` (or the incident the run belongs to),
    ``suggested`` from ``runbook_suggest_severity``, ``default`` from the runbook's
    ``SEVERITY`` constant. The default is a hint for an incident the run confirms: a
    run that ``found`` nothing (``has_findings``) does not claim it.
    """
    if operator is not None:
        return operator, "operator"
    if suggested is not None:
        return suggested, "runbook"
    if default is not None and found:
        return default, "default"
    return None, None


def suggest(pluginmanager: Any, result: Any, runbook_path: Any) -> str | None:
    """Ask plugins for a severity for ``result``; the most severe answer wins.

    Every collected runbook module is a plugin too: a runbook's own implementation is
    asked about its own runs only, never about another runbook's.
    """
    others = [
        plugin
        for plugin in pluginmanager.get_plugins()
        if _is_runbook_module(plugin) and not _same_file(plugin, runbook_path)
    ]
    caller = pluginmanager.subset_hook_caller("runbook_suggest_severity", others)
    return most_severe(caller(result=result))


def _is_runbook_module(plugin: object) -> bool:
    from runbook.api import CHECK_MARK

    return hasattr(plugin, "__file__") and any(
        hasattr(value, CHECK_MARK) for value in vars(plugin).values()
    )


def _same_file(plugin: object, path: Any) -> bool:
    from pathlib import Path

    filename = getattr(plugin, "__file__", None)
    return filename is not None and Path(filename).resolve() == Path(path).resolve()
