"""Run a runbook on one target: reach it, run the checks, then the actions.

Each target gets its own ``HostRun``: its checks run back to back on a lane
thread that the target's thread watches for timeouts, so targets can run in
parallel; what they share (fixtures of run scope, hooks, the redactor) is
thread-safe.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Any

from runbook.engine.worker import Job
from runbook.engine.worker import Lane
from runbook.engine.worker import Worker
from runbook.fixtures import ScopeName
from runbook.hosts.backend import Backend
from runbook.hosts.host import Host
from runbook.hosts.host import host_name
from runbook.model import ActionItem
from runbook.model import CheckItem
from runbook.model import Runbook
from runbook.outcomes import HostUnavailable
from runbook.params import fill_in
from runbook.params import needs_message
from runbook.params import params_read
from runbook.results import ActionResult
from runbook.results import ActionStatus
from runbook.results import CheckResult
from runbook.results import HostResult
from runbook.results import Verification
from runbook.results import classify_action
from runbook.safety.audithooks import Refusal
from runbook.safety.audithooks import guarding
from runbook.safety.audithooks import take_refusals
from runbook.steps import CommandRecord
from runbook.steps import Evidence
from runbook.steps import Step
from runbook.verdicts import judge
from runbook.verdicts import status_on_host

if TYPE_CHECKING:
    from runbook.fixtures import FixtureManager
    from runbook.hosts.host import CommandPolicy
    from runbook.params import Params
    from runbook.records import RunInfo
    from runbook.records import RunOptions
    from runbook.records import Target
    from runbook.safety.redact import Redactor
    from runbook.steps import CommandRecord

#: One operator, one prompt at a time, whatever the number of targets.
_confirm_lock = threading.Lock()


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
class RunContext:
    """What every target of one run shares: set once by the runner, read by each ``HostRun``.

    ``stop`` is set on Ctrl-C or a crash: targets stop before their next check
    or action.
    """

    runbook: Runbook
    checks: tuple[CheckItem, ...]
    info: RunInfo
    params: Params
    options: RunOptions
    fixtures: FixtureManager
    redactor: Redactor
    hook: Any
    policy: CommandPolicy
    stop: threading.Event

    def record_command(self, record: CommandRecord) -> CommandRecord:
        """Redact a command record as it happens and hand it to the plugins."""
        record = self.redactor.record(record)
        self.hook.runbook_command_finished(record=record)
        return record


class HostRun:
    """The checks and actions of one run on one target."""

    def __init__(self, run: RunContext, backend: Backend, target: Target) -> None:
        self.run = run
        self.backend = backend
        name = host_name(target, backend)
        self.host = Host(backend, name=name, policy=run.policy, on_record=run.record_command)
        self.checks: list[CheckResult] = []
        self.actions: list[ActionResult] = []
        self.warnings: list[str] = []
        self.result = HostResult(self.host.name, self.host.uri, "ok")
        self._worker: Worker | None = None
        self._job: Job | None = None
        self._lane: Lane | None = None

    @property
    def name(self) -> str:
        """The target's name, as reports show it."""
        return self.host.name

    def execute(self, may_act: bool = False) -> HostResult:
        """Reach the target, then run every selected check and every action on it.

        ``may_act`` is the run's mode, decided from the command line before any
        check ran and passed down as a value no check can reach.
        """
        try:
            self.host.connect()
        except HostUnavailable as exc:
            self.result = HostResult(self.name, self.host.uri, exc.status, exc.message)  # type: ignore[arg-type]
            self.run.hook.runbook_host_finished(result=self.result)
            self.host.close()
            return self.result
        try:
            self._run_checks()
            for action in self.run.runbook.actions:
                if self.run.stop.is_set():
                    return self.result
                self.actions.append(self._run_action(action, may_act))
        finally:
            finish = self.run.fixtures.finish
            self.warnings.extend(guarded_teardown(self, may_act, lambda: finish("host", self.name)))
            self.host.close()
            if self._worker is not None:
                self._worker.retire()
        self.run.hook.runbook_host_finished(result=self.result)
        return self.result

    def cancel(self) -> None:
        """Stop the step in flight (Ctrl-C): its commands are killed, its thread abandoned."""
        job, lane = self._job, self._lane
        if job is not None:
            job.step.cancel()
        if lane is not None:
            lane.cancel()

    def statuses(self) -> dict[str, str]:
        """Each hypothesis's status on this target from the checks so far."""
        return {
            h.id: status_on_host(r for r in self.checks if h.id in r.tests)
            for h in self.run.runbook.hypotheses
        }

    def _run_checks(self) -> None:
        """Run the selected checks in order on lanes; a check that overruns ends its lane."""
        items = self.run.checks
        position = 0
        while position < len(items) and not self.run.stop.is_set():
            pending: list[tuple[int, float, float]] = []  # index, start time, clock of the check

            def body(
                lane: Lane, start: int = position, pending: list[tuple[int, float, float]] = pending
            ) -> None:
                for index in range(start, len(items)):
                    if self.run.stop.is_set():
                        return
                    pending[:] = [(index, time.time(), time.perf_counter())]
                    self.checks.append(self._run_check(items[index], lane))

            lane = self._lane = Lane(body)
            try:
                overrun = lane.watch()
            except KeyboardInterrupt:
                lane.abandon()
                raise
            finally:
                self._lane = None
            if overrun is None:
                return
            index, started, clock = pending[0]
            item = items[index]
            result = self._check_result(item, overrun.step, None, started, clock, finished=False)
            self._record_check(result)
            position = index + 1

    def _run_check(self, item: CheckItem, lane: Lane | None = None) -> CheckResult:
        self.run.hook.runbook_check_started(check=item, host=self.name)
        needs = item.spec.needs
        if needs is not None and self.statuses().get(needs.id) != "ruled_in":
            tests = tuple(h.id for h in item.tests)
            message = f"needs {needs.id} ruled in first"
            result = CheckResult(
                item.id, self.name, "skipped", None, tests, message, 0.0, time.time()
            )
        else:
            result = self._call(item, lane)
        return self._record_check(result, append=False)

    def _record_check(self, result: CheckResult, append: bool = True) -> CheckResult:
        result = self.run.redactor.record(result)
        self.run.hook.runbook_check_finished(result=result)
        if append:
            self.checks.append(result)
        return result

    def _call(self, item: CheckItem, lane: Lane | None = None) -> CheckResult:
        """Run one check under the read-only guard and turn its ending into a result.

        On a lane the check runs right here (the lane's owner keeps the time);
        else it is handed to the worker thread.
        """
        step = Step(
            item.id, "check", self.name, read_only=True, allow_commands=item.spec.allow_commands
        )
        started, clock = time.time(), time.perf_counter()
        job = Job(lambda: self._invoke(item, step), step)
        if lane is not None:
            lane.run(job, self._timeout(item))
            finished, error = True, job.error
        else:
            finished, error = self._wait(job, self._timeout(item))
        return self._check_result(item, step, error, started, clock, finished, job.value)

    def _timeout(self, item: CheckItem) -> float:
        return self.run.options.timeout_for(item.spec.timeout)

    def _check_result(
        self,
        item: CheckItem,
        step: Step,
        error: BaseException | None,
        started: float,
        clock: float,
        finished: bool,
        returned: object = None,
    ) -> CheckResult:
        """The result of a check's call: its outcome, or ``timeout`` if it did not finish."""
        result = CheckResult.from_call(
            check=item.id,
            host=self.name,
            tests=tuple(h.id for h in item.tests),
            exc=error,
            returned=returned if finished else None,
            duration_s=time.perf_counter() - clock,
            started_at=started,
            evidence=tuple(step.evidence),
            commands=tuple(step.commands),
        )
        refusals = take_refusals(step)  # kept by the guard, out of the check's reach
        if refusals:
            messages = [refusal.message for refusal in refusals]
            refused = Evidence("Refused by the read-only guard", "\n".join(messages))
            records = self.log_refusals(step, refusals)
            result = dataclasses.replace(
                result,
                evidence=(*result.evidence, refused),
                commands=(*result.commands, *records),
            )
            if result.outcome not in ("blocked", "timeout"):
                # The check caught the ReadOnlyViolation; the attempt still counts.
                result = dataclasses.replace(
                    result, outcome="blocked", verdict="inconclusive", message=messages[0]
                )
        if finished:
            self._finish_step(step)
            return result
        return dataclasses.replace(
            result,
            outcome="timeout",
            verdict="inconclusive",
            message=f"check did not finish within {self._timeout(item):g}s and was abandoned",
        )

    def _wait(self, job: Job, timeout: float) -> tuple[bool, BaseException | None]:
        """Run ``job`` on the worker; on timeout or Ctrl-C stop its commands and abandon it."""
        if self._worker is None:
            self._worker = Worker()
        self._job = job
        try:
            finished = self._worker.run(job, timeout)
        except KeyboardInterrupt:
            self._abandon(job)
            raise
        finally:
            self._job = None
        if not finished:
            self._abandon(job)
        return finished, job.error if finished else None

    def _abandon(self, job: Job) -> None:
        job.step.cancel()
        if self._worker is not None:
            self._worker.retire()
        self._worker = None

    def _step_key(self, step: Step) -> str:
        # Unique per call: an abandoned (timed-out) step keeps its own fixtures.
        return f"{self.name}/{step.id}/{id(step):x}"

    def _finish_step(self, step: Step) -> None:
        self.warnings.extend(self.run.fixtures.finish("check", self._step_key(step)))

    def _invoke(self, item: CheckItem | ActionItem, step: Step) -> object:
        run = self.run
        builtins: dict[str, Any] = {"host": self.host, "params": run.params, "run_info": run.info}
        if "findings" in item.argnames or run.fixtures.needs_findings:
            builtins["findings"] = self._findings()
        keys: dict[ScopeName, str] = {
            "run": "run",
            "host": self.name,
            "check": self._step_key(step),
        }
        # Fixtures are runbook code: a check's are set up and torn down under its guard.
        try:
            kwargs = run.fixtures.resolve(item.argnames, keys, builtins)
            return item.func(**kwargs)
        finally:
            if step.read_only:
                self.warnings.extend(run.fixtures.finish("check", keys["check"]))

    def log_refusals(self, step: Step, refusals: tuple[Refusal, ...]) -> list[CommandRecord]:
        """Send in-process refusals to the audit log as blocked records; return them."""
        records = []
        for refusal in refusals:
            if refusal.in_process:
                record = CommandRecord(
                    self.name,
                    step.id,
                    f"(in-process) {refusal.operation}",
                    None,
                    0.0,
                    True,
                    time.time(),
                    refusal.reason,
                )
                records.append(self.run.record_command(record))
        return records

    def _findings(self) -> Findings:
        statuses = self.statuses()
        evidence = {
            hypothesis: tuple(
                r.message for r in self.checks if hypothesis in r.tests and r.verdict == status
            )
            for hypothesis, status in statuses.items()
        }
        return Findings(self.name, statuses, evidence)

    def _run_action(self, item: ActionItem, may_act: bool) -> ActionResult:
        mitigates = tuple(h.id for h in item.spec.mitigates)
        statuses = self.statuses()
        ruled_in = [h for h in mitigates if statuses.get(h) == "ruled_in"]
        now = time.time()
        if not ruled_in:
            reason = "no hypothesis it mitigates was ruled in"
            result = ActionResult(item.id, self.name, mitigates, "not_needed", reason, now)
        elif not may_act:
            missing = [key for key in self.run.params.unset if key in params_read(item.func)]
            needs = "".join(f"; {needs_message(key)}" for key in missing)
            reason = (
                f"read-only mode: would run because {', '.join(ruled_in)} was ruled in{needs}; "
                "pass --execute to run it"
            )
            result = ActionResult(item.id, self.name, mitigates, "planned", reason, now)
        else:
            result = self._execute_action(item, mitigates)
        result = self.run.redactor.record(result)
        self.run.hook.runbook_action_finished(result=result)
        return result

    def _confirmed(self, item: ActionItem) -> tuple[bool, str]:
        confirm = self.run.options.confirm
        if not item.spec.confirm:
            return True, ""
        if confirm is None:
            return False, "no prompt"
        judged = judge(self.run.runbook.hypotheses, [self.name], self.checks)
        described = fill_in(item.doc or "(no description)", self.run.params)
        with _confirm_lock:
            return confirm(item, self.name, judged, described)

    def _execute_action(self, item: ActionItem, mitigates: tuple[str, ...]) -> ActionResult:
        now = time.time()
        go, reason = self._confirmed(item)
        if not go:
            return ActionResult(item.id, self.name, mitigates, "declined", reason, now)
        step = Step(item.id, "action", self.name, read_only=False)
        self.run.hook.runbook_action_started(action=item, host=self.name)
        clock = time.perf_counter()
        timeout = self.run.options.timeout_for()
        finished, error = self._wait(Job(lambda: self._invoke(item, step), step), timeout)
        status: ActionStatus
        if not finished:
            status, message = "failed", f"action did not finish within {timeout:g}s"
        else:
            self._finish_step(step)
            status, message = classify_action(error)
        result = ActionResult(
            item.id,
            self.name,
            mitigates,
            status,
            message,
            now,
            time.perf_counter() - clock,
            tuple(step.evidence),
            tuple(step.commands),
        )
        return self._verify(result) if status == "executed" else result

    def _verify(self, action: ActionResult) -> ActionResult:
        """Re-run the checks of the hypotheses an action mitigates: did it work?"""
        statuses = self.statuses()
        ruled_in = [h for h in action.mitigates if statuses.get(h) == "ruled_in"]
        checks = [c for c in self.run.checks if any(h.id in ruled_in for h in c.tests)]
        results = [self._call(check) for check in checks]
        after = [status_on_host(r for r in results if h in r.tests) for h in ruled_in]
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


def guarded_teardown(
    host_run: HostRun, may_act: bool, finish: Callable[[], list[str]]
) -> list[str]:
    """Tear down fixtures of a wider scope; in read-only mode under the guard.

    Refusals become warnings and blocked records in the audit log.
    """
    if may_act:
        return finish()
    step = Step("fixture teardown", "check", host_run.name, read_only=True)
    with guarding(step):
        warnings = finish()
    refusals = take_refusals(step)
    host_run.log_refusals(step, refusals)
    return [*warnings, *(refusal.message for refusal in refusals)]
