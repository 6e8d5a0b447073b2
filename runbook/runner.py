"""Run one runbook against its targets: checks, then verdicts, then actions.

The main loop is small on purpose: what the results mean for the terminal,
the report and the JSON file is left to plugins that implement the hooks.
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import socket
import time
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

from runbook.audithooks import framework_call
from runbook.fixtures import FixtureError
from runbook.fixtures import FixtureManager
from runbook.fixtures import ScopeName
from runbook.guard import make_policy
from runbook.hosts import Backend
from runbook.hosts import Host
from runbook.keywords import compile_keywords
from runbook.model import ActionItem
from runbook.model import CheckItem
from runbook.model import Runbook
from runbook.outcomes import CollectionError
from runbook.outcomes import ExitCode
from runbook.outcomes import UsageError
from runbook.params import Params
from runbook.params import resolve_params
from runbook.redact import Redactor
from runbook.results import ActionResult
from runbook.results import ActionStatus
from runbook.results import CheckResult
from runbook.results import HostResult
from runbook.results import HypothesisResult
from runbook.results import Mode
from runbook.results import RunResult
from runbook.results import Verification
from runbook.steps import CommandRecord
from runbook.steps import Evidence
from runbook.steps import Step
from runbook.verdicts import judge
from runbook.verdicts import status_on_host
from runbook.worker import Job
from runbook.worker import Worker

#: Default time a check may take before it is abandoned as ``timeout``.
DEFAULT_CHECK_TIMEOUT = 60.0

#: Asked before an action runs in execute mode: returns (go ahead?, reason if not).
Confirm = Callable[[ActionItem, str, Sequence[HypothesisResult]], tuple[bool, str]]


@dataclasses.dataclass(frozen=True, slots=True)
class RunInfo:
    """What the ``run_info`` fixture tells checks and actions about this run."""

    runbook: str
    mode: Mode
    incident: str | None
    severity: str | None
    operator: str
    started_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class Findings:
    """What the ``findings`` fixture tells an action: hypothesis statuses on its host."""

    host: str
    statuses: dict[str, str]
    evidence: dict[str, tuple[str, ...]]

    @property
    def ruled_in(self) -> list[str]:
        """Ids of the hypotheses ruled in on this host."""
        return [key for key, status in self.statuses.items() if status == "ruled_in"]

    def status(self, hypothesis: object) -> str:
        """Return the status of a hypothesis (object or id) on this host."""
        return self.statuses[str(hypothesis)]


@dataclasses.dataclass(frozen=True, slots=True)
class RunOptions:
    """How to run: mode, targets, selection, identity and where results go."""

    hosts: tuple[str, ...] = ("local",)
    params: dict[str, str] = dataclasses.field(default_factory=dict)
    keyword: str | None = None
    execute: bool = False
    confirm: Confirm | None = None
    check_timeout: float | None = None
    incident: str | None = None
    severity: str | None = None
    operator: str | None = None
    report: str | None = None
    json: str | None = None


def _check_key(host: Host, step: Step) -> str:
    # Unique per call: an abandoned (timed-out) check keeps its own fixtures.
    return f"{host.name}/{step.id}/{id(step):x}"


def default_operator() -> str:
    """Return who is running this: ``$RUNBOOK_OPERATOR``, else user@host."""
    explicit = os.environ.get("RUNBOOK_OPERATOR")
    if explicit:
        return explicit
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


class Run:
    """One runbook run: prepare (may raise usage errors), then execute."""

    def __init__(
        self,
        config: Any,
        runbook: Runbook,
        options: RunOptions,
        plugin_fixtures: Sequence[Any] = (),
    ) -> None:
        self.config = config
        self.hook = config.hook
        self.runbook = runbook
        self.options = options
        self.params: Params = resolve_params(runbook.params, options.params, runbook.secrets)
        self.redactor = Redactor.from_params(self.params, runbook.secrets)
        self.fixtures = FixtureManager((*runbook.fixtures, *plugin_fixtures))
        self._validate_fixtures()
        self.checks = self._select(runbook.checks)
        self.mode: Mode = "execute" if options.execute else "read-only"
        self.started_at = time.time()
        self.info = RunInfo(
            runbook.name,
            self.mode,
            options.incident,
            options.severity or runbook.severity,
            options.operator or default_operator(),
            self.started_at,
        )
        self.policy = make_policy(config, self.mode)
        self.check_results: list[CheckResult] = []
        self.action_results: list[ActionResult] = []
        self.host_results: list[HostResult] = []
        self.warnings: list[str] = []
        self._worker = Worker()

    def _validate_fixtures(self) -> None:
        items: tuple[CheckItem | ActionItem, ...] = (*self.runbook.checks, *self.runbook.actions)
        for item in items:
            try:
                self.fixtures.validate(item.argnames)
            except FixtureError as exc:
                raise CollectionError(
                    str(self.runbook.path), item.lineno, f"{item.id}: {exc}"
                ) from None

    def _select(self, checks: Sequence[CheckItem]) -> tuple[CheckItem, ...]:
        if not self.options.keyword:
            return tuple(checks)
        matches = compile_keywords(self.options.keyword)
        return tuple(c for c in checks if matches([c.id, *(h.id for h in c.tests)]))

    @property
    def host_names(self) -> list[str]:
        """Names of the targets that were (or are being) run against."""
        return [result.name for result in self.host_results]

    def execute(self) -> RunResult:
        """Run every target and report; on Ctrl-C or a crash, still report what was found."""
        backends = [self._backend(spec) for spec in self.options.hosts]
        self.hook.runbook_run_started(run=self)
        interrupted = False
        crash: Exception | None = None
        try:
            for backend in backends:
                self._run_target(backend)
        except KeyboardInterrupt:
            interrupted = True
            self.warnings.append("interrupted by the operator (Ctrl-C): this report is partial")
        except Exception as exc:  # a crashing plugin must not cost the report
            crash = exc
            self.warnings.append(f"internal error, the run stopped: {type(exc).__name__}: {exc}")
        finally:
            self.warnings.extend(self.fixtures.finish_all())
            self._worker.retire()
        result = self._result(interrupted, crashed=crash is not None)
        groups = self.hook.runbook_report_sections(result=result)
        sections = [(title, self.redactor.text(body)) for g in groups for title, body in g or ()]
        result = dataclasses.replace(result, sections=tuple(sections))
        self.hook.runbook_run_finished(result=result)
        if crash is not None:
            raise crash
        return result

    def _backend(self, spec: str) -> Backend:
        backend: Backend | None = self.hook.runbook_make_host(spec=spec, config=self.config)
        if backend is None:
            raise UsageError(f"unknown target {spec!r}: no backend handles it")
        return backend

    def _run_target(self, backend: Backend) -> None:
        host = Host(backend, policy=self.policy, on_record=self._on_record)
        self.host_results.append(HostResult(host.name, host.uri, "ok"))
        try:
            for item in self.checks:
                self.check_results.append(self._run_check(item, host))
            for action in self.runbook.actions:
                self.action_results.append(self._run_action(action, host))
        finally:
            self.warnings.extend(self.fixtures.finish("host", host.name))
            host.close()

    def _on_record(self, record: CommandRecord) -> CommandRecord:
        """Redact a command record as it happens and hand it to the plugins."""
        record = self.redactor.record(record)
        self.hook.runbook_command_finished(record=record)
        return record

    def _statuses(self, host: str) -> dict[str, str]:
        return {
            h.id: status_on_host(
                r for r in self.check_results if r.host == host and h.id in r.tests
            )
            for h in self.runbook.hypotheses
        }

    def _run_check(self, item: CheckItem, host: Host) -> CheckResult:
        self.hook.runbook_check_started(check=item, host=host.name)
        tests = tuple(h.id for h in item.tests)
        needs = item.spec.needs
        if needs is not None and self._statuses(host.name).get(needs.id) != "ruled_in":
            result = CheckResult(
                item.id,
                host.name,
                "skipped",
                None,
                tests,
                f"needs {needs.id} ruled in first",
                0.0,
                time.time(),
            )
        else:
            result = self._call(item, host, tests)
        result = self.redactor.record(result)
        self.hook.runbook_check_finished(result=result)
        return result

    def _call(self, item: CheckItem, host: Host, tests: tuple[str, ...]) -> CheckResult:
        step = Step(
            item.id, "check", host.name, read_only=True, allow_commands=item.spec.allow_commands
        )
        timeout = item.spec.timeout or self.options.check_timeout or DEFAULT_CHECK_TIMEOUT
        started, clock = time.time(), time.perf_counter()
        job = Job(lambda: self._invoke(item, host, step), step)
        finished = self._wait(job, timeout)
        result = CheckResult.from_call(
            check=item.id,
            host=host.name,
            tests=tests,
            exc=job.error if finished else None,
            duration_s=time.perf_counter() - clock,
            started_at=started,
            evidence=tuple(step.evidence),
            commands=tuple(step.commands),
        )
        if step.refusals:
            refused = Evidence("Refused by the read-only guard", "\n".join(step.refusals))
            result = dataclasses.replace(result, evidence=(*result.evidence, refused))
            if result.outcome not in ("blocked", "timeout"):
                # The check caught the ReadOnlyViolation; the attempt still counts.
                result = dataclasses.replace(
                    result, outcome="blocked", verdict="inconclusive", message=step.refusals[0]
                )
        if finished:
            self.warnings.extend(self.fixtures.finish("check", _check_key(host, step)))
            return result
        return dataclasses.replace(
            result,
            outcome="timeout",
            verdict="inconclusive",
            message=f"check did not finish within {timeout:g}s and was abandoned",
        )

    def _wait(self, job: Job, timeout: float) -> bool:
        """Run ``job``; on timeout stop its commands and give up on its thread."""
        try:
            finished = self._worker.run(job, timeout)
        except KeyboardInterrupt:
            job.step.cancel()
            self._replace_worker()
            raise
        if not finished:
            job.step.cancel()
            self._replace_worker()
        return finished

    def _replace_worker(self) -> None:
        self._worker.retire()
        self._worker = Worker()

    def _invoke(self, item: CheckItem | ActionItem, host: Host, step: Step) -> None:
        builtins: dict[str, Any] = {"host": host, "params": self.params, "run_info": self.info}
        if "findings" in item.argnames or self.fixtures.needs_findings:
            builtins["findings"] = self._findings(host.name)
        keys: dict[ScopeName, str] = {
            "run": "run",
            "host": host.name,
            "check": _check_key(host, step),
        }
        with framework_call():  # fixture set-up is trusted like plugin code; commands are not
            kwargs = self.fixtures.resolve(item.argnames, keys, builtins)
        item.func(**kwargs)

    def _findings(self, host: str) -> Findings:
        statuses = self._statuses(host)
        evidence = {
            hypothesis: tuple(
                r.message
                for r in self.check_results
                if r.host == host and hypothesis in r.tests and r.verdict == status
            )
            for hypothesis, status in statuses.items()
        }
        return Findings(host, statuses, evidence)

    def _run_action(self, item: ActionItem, host: Host) -> ActionResult:
        mitigates = tuple(h.id for h in item.spec.mitigates)
        statuses = self._statuses(host.name)
        ruled_in = [h for h in mitigates if statuses.get(h) == "ruled_in"]
        now = time.time()
        if not ruled_in:
            result = ActionResult(
                item.id,
                host.name,
                mitigates,
                "not_needed",
                "no hypothesis it mitigates was ruled in",
                now,
            )
        elif self.mode != "execute":
            result = ActionResult(
                item.id,
                host.name,
                mitigates,
                "planned",
                f"read-only mode: would run because {', '.join(ruled_in)} was ruled in; "
                "pass --execute to run it",
                now,
            )
        else:
            result = self._execute_action(item, host, mitigates)
        result = self.redactor.record(result)
        self.hook.runbook_action_finished(result=result)
        return result

    def _execute_action(
        self, item: ActionItem, host: Host, mitigates: tuple[str, ...]
    ) -> ActionResult:
        now = time.time()
        if item.spec.confirm:
            confirm = self.options.confirm
            judged = judge(self.runbook.hypotheses, [host.name], self.check_results)
            go, reason = confirm(item, host.name, judged) if confirm else (False, "no prompt")
            if not go:
                return ActionResult(item.id, host.name, mitigates, "declined", reason, now)
        step = Step(item.id, "action", host.name, read_only=False)
        self.hook.runbook_action_started(action=item, host=host.name)
        clock = time.perf_counter()
        job = Job(lambda: self._invoke(item, host, step), step)
        timeout = self.options.check_timeout or DEFAULT_CHECK_TIMEOUT
        finished = self._wait(job, timeout)
        status: ActionStatus
        if not finished:
            status, message = "failed", f"action did not finish within {timeout:g}s"
        elif job.error is not None:
            self.warnings.extend(self.fixtures.finish("check", _check_key(host, step)))
            status, message = "failed", f"{type(job.error).__name__}: {job.error}"
        else:
            self.warnings.extend(self.fixtures.finish("check", _check_key(host, step)))
            status, message = "executed", "done"
        result = ActionResult(
            item.id,
            host.name,
            mitigates,
            status,
            message,
            now,
            time.perf_counter() - clock,
            tuple(step.evidence),
            tuple(step.commands),
        )
        return self._verify(result, host) if status == "executed" else result

    def _verify(self, action: ActionResult, host: Host) -> ActionResult:
        """Re-run the checks of the hypotheses an action mitigates: did it work?"""
        ruled_in = [h for h in action.mitigates if self._statuses(host.name).get(h) == "ruled_in"]
        checks = [c for c in self.checks if any(h.id in ruled_in for h in c.tests)]
        results = [self._call(c, host, tuple(h.id for h in c.tests)) for c in checks]
        after = [
            status_on_host(r for r in results if hypothesis in r.tests) for hypothesis in ruled_in
        ]
        verification: Verification = (
            "still_ruled_in"
            if "ruled_in" in after
            else "resolved"
            if after and all(status == "ruled_out" for status in after)
            else "inconclusive"
        )
        words = {
            "resolved": f"verified: {', '.join(ruled_in)} now ruled out",
            "still_ruled_in": f"not verified: {', '.join(ruled_in)} still ruled in",
            "inconclusive": "not verified: the checks were inconclusive",
        }
        return dataclasses.replace(
            action,
            message=f"done; {words[verification]}",
            verification=verification,
            verify_checks=tuple(results),
        )

    def _result(self, interrupted: bool, crashed: bool = False) -> RunResult:
        hosts = self.host_names
        hypotheses = judge(self.runbook.hypotheses, hosts, self.check_results)
        return RunResult(
            runbook={
                "name": self.runbook.name,
                "title": self.runbook.title,
                "description": self.runbook.description,
                "source": self.runbook.source,
            },
            mode=self.mode,
            incident=self.info.incident,
            severity=self.info.severity,
            operator=self.info.operator,
            started_at=self.started_at,
            finished_at=time.time(),
            exit_code=int(self._exit_code(interrupted, crashed, hypotheses)),
            hosts=tuple(self.host_results),
            hypotheses=hypotheses,
            checks=tuple(self.check_results),
            actions=tuple(self.action_results),
            params=self.params.redacted(),
            report=self.options.report,
            json=self.options.json,
            interrupted=interrupted or crashed,
            warnings=tuple(self.redactor.text(warning) for warning in self.warnings),
        )

    def _exit_code(
        self, interrupted: bool, crashed: bool, hypotheses: Sequence[HypothesisResult]
    ) -> ExitCode:
        if crashed:
            return ExitCode.INTERNAL_ERROR
        if interrupted:
            return ExitCode.INTERRUPTED
        bad_outcomes = {"failed", "error", "timeout", "blocked"}
        if (
            any(h.status == "ruled_in" for h in hypotheses)
            or any(r.outcome in bad_outcomes for r in self.check_results)
            or any(h.status != "ok" for h in self.host_results)
            or any(a.status == "failed" for a in self.action_results)
        ):
            return ExitCode.FINDINGS
        return ExitCode.OK
