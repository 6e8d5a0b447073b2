"""Immutable result records, and the JSON shape of a run (schema ``runbook.result/1``).

Reporters receive these records through hooks and never import the runner.
"""

from __future__ import annotations

import dataclasses
import linecache
import traceback
from typing import Any
from typing import Literal

from runbook.outcomes import CommandTimeout
from runbook.outcomes import Inconclusive
from runbook.outcomes import ReadOnlyViolation
from runbook.outcomes import RuleIn
from runbook.outcomes import RuleOut
from runbook.outcomes import Skipped
from runbook.steps import NOT_SECRET
from runbook.steps import CommandRecord
from runbook.steps import Evidence
from runbook.timestamps import isotime

SCHEMA = "runbook.result/1"

Outcome = Literal["passed", "failed", "error", "skipped", "timeout", "blocked"]
Verdict = Literal["ruled_in", "ruled_out", "inconclusive"]
Status = Literal["ruled_in", "ruled_out", "inconclusive", "untested"]
ActionStatus = Literal["planned", "not_needed", "executed", "failed", "declined"]
HostStatus = Literal["ok", "unreachable", "auth_failed", "host_key_rejected", "error"]
Mode = Literal["read-only", "execute", "dry-run"]
#: After an executed action: did its hypotheses stop being ruled in?
Verification = Literal["resolved", "still_ruled_in", "inconclusive"]


@dataclasses.dataclass(frozen=True, slots=True)
class CheckResult:
    """The result of one check on one host."""

    check: str = dataclasses.field(metadata=NOT_SECRET)
    host: str = dataclasses.field(metadata=NOT_SECRET)
    outcome: Outcome = dataclasses.field(metadata=NOT_SECRET)
    verdict: Verdict | None = dataclasses.field(metadata=NOT_SECRET)
    tests: tuple[str, ...] = dataclasses.field(metadata=NOT_SECRET)
    message: str
    duration_s: float = dataclasses.field(metadata=NOT_SECRET)
    started_at: float = dataclasses.field(metadata=NOT_SECRET)
    evidence: tuple[Evidence, ...] = ()
    #: Redacted as they were recorded.
    commands: tuple[CommandRecord, ...] = dataclasses.field(default=(), metadata=NOT_SECRET)
    traceback: str | None = None

    @property
    def is_symptom(self) -> bool:
        """True for a symptom check (one that tests no hypothesis)."""
        return not self.tests

    @classmethod
    def from_call(
        cls,
        *,
        check: str,
        host: str,
        tests: tuple[str, ...],
        exc: BaseException | None,
        duration_s: float,
        started_at: float,
        evidence: tuple[Evidence, ...] = (),
        commands: tuple[CommandRecord, ...] = (),
        returned: object = None,
    ) -> CheckResult:
        """Turn how a check's call ended (returned, or raised ``exc``) into a result.

        A check that returns a string passes with it as its message: what it
        measured against what it expected ("busiest process 2% CPU, limit 80%").
        """
        outcome, verdict, message, trace = classify(exc)
        if exc is None and isinstance(returned, str):
            message = returned.strip()
        if not tests:
            verdict = None  # a symptom check tests no hypothesis
        return cls(
            check,
            host,
            outcome,
            verdict,
            tests,
            message,
            duration_s,
            started_at,
            evidence,
            commands,
            trace,
        )


def classify(exc: BaseException | None) -> tuple[Outcome, Verdict | None, str, str | None]:
    """Map a check's ending to (outcome, verdict, message, short traceback)."""
    if exc is None:
        return "passed", "ruled_out", "", None
    if isinstance(exc, RuleOut):
        return "passed", "ruled_out", exc.msg, None
    if isinstance(exc, RuleIn):
        return "failed", "ruled_in", exc.msg, None
    if isinstance(exc, Inconclusive):
        return "passed", "inconclusive", exc.msg, None
    if isinstance(exc, Skipped):
        return "skipped", None, exc.msg, None
    if isinstance(exc, AssertionError):
        return "failed", "ruled_in", assertion_message(exc), None
    if isinstance(exc, CommandTimeout):
        return "timeout", "inconclusive", str(exc), None
    if isinstance(exc, ReadOnlyViolation):
        return "blocked", "inconclusive", str(exc), None
    return "error", "inconclusive", f"{type(exc).__name__}: {exc}", short_traceback(exc)


def classify_action(exc: BaseException | None) -> tuple[ActionStatus, str]:
    """Map an executed action's ending to (status, message), as ``classify`` does for checks.

    ``skip()`` means the action found nothing to do (``not_needed``); a normal end or
    ``rule_out``/``inconclusive`` means it ran; anything else is a failure.
    """
    outcome, _, message, _ = classify(exc)
    if outcome == "skipped":
        return "not_needed", message or "skipped by the action"
    if outcome == "passed":
        return "executed", message or "done"
    return "failed", message


def assertion_message(exc: AssertionError) -> str:
    """Return the assertion's message, or the failing ``assert`` line when it has none."""
    text = str(exc)
    if text and _rewritten_by_pytest(exc):
        # pytest appends its explanation ("\nassert 83.3 < 80.0 ..."): keep the runbook's words.
        text = "" if text.startswith("assert ") else text.split("\nassert ", 1)[0]
    if text:
        return text
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        frame = frames[-1]
        first = frame.lineno or 0
        last = max(first, frame.end_lineno or first)  # an assert may span several lines
        lines = (linecache.getline(frame.filename, n).strip() for n in range(first, last + 1))
        source = " ".join(line for line in lines if line)
        if source:
            return f"failed: {source}"
    return "assertion failed"


def _rewritten_by_pytest(exc: BaseException) -> bool:
    """True when the failing ``assert`` is in a module pytest rewrote.

    Installing runbook registers its pytest plugin, and pytest then rewrites the
    asserts of every module of the distribution, the built-in runbooks too, when
    a test imports them: their messages must read as they do from the CLI.
    """
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and "@py_builtins" in tb.tb_frame.f_globals


def short_traceback(exc: BaseException, limit: int = 4) -> str:
    """Return the last frames of a traceback: enough to find the bug, short enough to read."""
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-limit)
    return "".join(lines).rstrip()


@dataclasses.dataclass(frozen=True, slots=True)
class ActionResult:
    """What happened to one action on one host."""

    action: str = dataclasses.field(metadata=NOT_SECRET)
    host: str = dataclasses.field(metadata=NOT_SECRET)
    mitigates: tuple[str, ...] = dataclasses.field(metadata=NOT_SECRET)
    status: ActionStatus = dataclasses.field(metadata=NOT_SECRET)
    message: str
    started_at: float = dataclasses.field(metadata=NOT_SECRET)
    duration_s: float = dataclasses.field(default=0.0, metadata=NOT_SECRET)
    evidence: tuple[Evidence, ...] = ()
    #: Redacted as they were recorded.
    commands: tuple[CommandRecord, ...] = dataclasses.field(default=(), metadata=NOT_SECRET)
    #: The verify step: the outcome of re-running the checks of what it mitigates.
    verification: Verification | None = dataclasses.field(default=None, metadata=NOT_SECRET)
    verify_checks: tuple[CheckResult, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class HostResult:
    """How a target fared: reached or not, and why."""

    name: str
    uri: str
    status: HostStatus
    error: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class HypothesisResult:
    """A hypothesis's status across hosts, with the evidence that decided it."""

    id: str
    statement: str
    status: Status
    hosts: dict[str, Status]
    evidence: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class RunResult:
    """Everything a run found, in the order reporters need it."""

    runbook: dict[str, Any]
    mode: Mode
    incident: str | None
    severity: str | None
    operator: str
    started_at: float
    finished_at: float
    exit_code: int
    hosts: tuple[HostResult, ...]
    hypotheses: tuple[HypothesisResult, ...]
    checks: tuple[CheckResult, ...]
    actions: tuple[ActionResult, ...]
    params: dict[str, Any]
    report: str | None
    json: str | None
    interrupted: bool = False
    warnings: tuple[str, ...] = ()
    sections: tuple[tuple[str, str], ...] = ()
    #: What widened the read-only allowlist for this run: configuration, checks, plugins.
    read_only_extensions: tuple[str, ...] = ()
    #: What ``runbook_suggest_severity`` suggested from the findings.
    severity_suggested: str | None = None
    #: Who set ``severity``: ``operator``, ``runbook`` (the suggestion) or ``default``.
    severity_source: str | None = None
    #: The cassette the run was replayed from; None when it reached real targets.
    replay: str | None = None

    @property
    def commands(self) -> list[CommandRecord]:
        """Every command of every check and action, in the order they started."""
        records = [c for check in self.checks for c in check.commands]
        records += [c for action in self.actions for c in action.commands]
        records += [c for a in self.actions for check in a.verify_checks for c in check.commands]
        return sorted(records, key=lambda record: record.started_at)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON result, schema ``runbook.result/1``."""
        return {
            "schema": SCHEMA,
            "runbook": self.runbook,
            "mode": self.mode,
            "replay": self.replay,
            "incident": self.incident,
            "severity": self.severity,
            "severity_suggested": self.severity_suggested,
            "severity_source": self.severity_source,
            "operator": self.operator,
            "started_at": isotime(self.started_at),
            "finished_at": isotime(self.finished_at),
            "duration_s": round(self.finished_at - self.started_at, 3),
            "exit_code": self.exit_code,
            "interrupted": self.interrupted,
            "params": self.params,
            "hosts": [dataclasses.asdict(host) for host in self.hosts],
            "hypotheses": [_hypothesis_dict(h) for h in self.hypotheses],
            "checks": [_check_dict(c) for c in self.checks],
            "actions": [_action_dict(a) for a in self.actions],
            "commands": [_command_dict(c) for c in self.commands],
            "warnings": list(self.warnings),
            "read_only_extensions": list(self.read_only_extensions),
            "sections": [{"title": t, "body": b} for t, b in self.sections],
            "report": self.report,
        }


def _evidence_list(items: tuple[Evidence, ...]) -> list[dict[str, str]]:
    return [{"title": item.title, "body": item.body} for item in items]


def _hypothesis_dict(item: HypothesisResult) -> dict[str, Any]:
    return {
        "id": item.id,
        "statement": item.statement,
        "status": item.status,
        "hosts": dict(item.hosts),
        "evidence": list(item.evidence),
    }


def _check_dict(item: CheckResult) -> dict[str, Any]:
    return {
        "id": item.check,
        "host": item.host,
        "outcome": item.outcome,
        "verdict": item.verdict,
        "tests": list(item.tests),
        "message": item.message,
        "duration_s": round(item.duration_s, 4),
        "started_at": isotime(item.started_at, precise=True),
        "evidence": _evidence_list(item.evidence),
        "traceback": item.traceback,
    }


def _action_dict(item: ActionResult) -> dict[str, Any]:
    return {
        "id": item.action,
        "host": item.host,
        "mitigates": list(item.mitigates),
        "status": item.status,
        "message": item.message,
        "started_at": isotime(item.started_at, precise=True),
        "duration_s": round(item.duration_s, 4),
        "evidence": _evidence_list(item.evidence),
        "verification": None
        if item.verification is None
        else {
            "status": item.verification,
            "checks": [_check_dict(check) for check in item.verify_checks],
        },
    }


def _command_dict(item: CommandRecord) -> dict[str, Any]:
    return {
        "host": item.host,
        "check": item.step,
        "command": item.command,
        "exit_status": item.exit_status,
        "duration_s": round(item.duration_s, 4),
        "blocked": item.blocked,
        "reason": item.reason or None,
        "started_at": isotime(item.started_at, precise=True),
    }
