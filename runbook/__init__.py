"""runbook: incident runbooks as code.

Write checks that rule hypotheses in or out, actions that mitigate them, and
let the runner investigate read-only, gate changes behind ``--execute`` and
write the incident report.
"""

from __future__ import annotations

from runbook.api import Hypothesis
from runbook.api import action
from runbook.api import check
from runbook.api import evidence
from runbook.api import hypothesis
from runbook.fixtures import fixture
from runbook.hosts.host import CommandResult
from runbook.hosts.host import Host
from runbook.markers import hookimpl
from runbook.markers import hookspec
from runbook.outcomes import CommandTimeout
from runbook.outcomes import ExitCode
from runbook.outcomes import ReadOnlyViolation
from runbook.outcomes import inconclusive
from runbook.outcomes import rule_in
from runbook.outcomes import rule_out
from runbook.outcomes import skip
from runbook.severity import severity_from_findings

__all__ = [
    "CommandResult",
    "CommandTimeout",
    "ExitCode",
    "Host",
    "Hypothesis",
    "ReadOnlyViolation",
    "action",
    "check",
    "evidence",
    "fixture",
    "hookimpl",
    "hookspec",
    "hypothesis",
    "inconclusive",
    "rule_in",
    "rule_out",
    "severity_from_findings",
    "skip",
]
