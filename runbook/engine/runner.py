"""Run one runbook against its targets: checks, then verdicts, then actions.

The main loop is small on purpose: each target is a ``HostRun`` (several run in
parallel, ``--forks``), and what the results mean for the terminal, the report
and the JSON file is left to plugins that implement the hooks. Plugins see the
run through frozen records (``RunStart``, results), never through this class.
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

from runbook.config import Config
from runbook.engine.hostrun import HostRun
from runbook.engine.hostrun import RunContext
from runbook.engine.hostrun import guarded_teardown
from runbook.fixtures import FixtureError
from runbook.fixtures import FixtureManager
from runbook.hosts.backend import Backend
from runbook.keywords import compile_keywords
from runbook.model import ActionItem
from runbook.model import CheckItem
from runbook.model import Runbook
from runbook.outcomes import CollectionError
from runbook.outcomes import ExitCode
from runbook.outcomes import UsageError
from runbook.params import resolve_params
from runbook.pluginmanager import DEFAULT_PLUGINS
from runbook.records import RunInfo
from runbook.records import RunOptions
from runbook.records import RunStart
from runbook.records import Target
from runbook.results import ActionResult
from runbook.results import CheckResult
from runbook.results import HostResult
from runbook.results import HypothesisResult
from runbook.results import Mode
from runbook.results import RunResult
from runbook.safety.audithooks import trust_plugins
from runbook.safety.guard import make_policy
from runbook.safety.redact import Redactor
from runbook.severity import decide
from runbook.severity import has_findings
from runbook.severity import suggest
from runbook.verdicts import judge

#: The warning of a run that tested nothing (it exits 5, not 0).
_NOTHING_TESTED = (
    "nothing was tested: every check was skipped, so no hypothesis was ruled in or out"
)

#: Targets reached at once unless ``--forks`` says otherwise.
DEFAULT_FORKS = 16


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


def make_backend(config: Config, target: Target) -> Backend:
    """Ask the plugins for the backend of ``target``; a spec no plugin handles is a usage error."""
    backend: Backend | None = config.hook.runbook_make_host(spec=target.spec, config=config)
    if backend is None:
        raise UsageError(f"unknown target {target.spec!r}: no backend handles it")
    return backend


class Run:
    """One runbook run: prepare (may raise usage errors), then execute."""

    def __init__(
        self,
        config: Config,
        runbook: Runbook,
        options: RunOptions,
        plugin_fixtures: Sequence[Any] = (),
    ) -> None:
        self.config = config
        self.runbook = runbook
        self.options = options
        params = resolve_params(runbook.params, dict(options.params), runbook.secrets)
        self.redactor = Redactor.from_params(params, runbook.secrets)
        fixtures = FixtureManager((*runbook.fixtures, *plugin_fixtures))
        self._validate_fixtures(fixtures)
        mode: Mode = "execute" if options.execute else "read-only"
        info = RunInfo(
            runbook.name,
            mode,
            options.incident,
            options.severity,  # the runbook's is decided from the findings, after the checks
            options.operator or default_operator(),
            time.time(),
            options.replay,
        )
        self.context = RunContext(
            runbook=runbook,
            checks=self._select(runbook.checks),
            info=info,
            params=params,
            options=options,
            fixtures=fixtures,
            redactor=self.redactor,
            hook=config.hook,
            policy=make_policy(config, mode),
            stop=threading.Event(),
        )
        self.host_runs: list[HostRun] = []
        self.warnings: list[str] = []

    @property
    def checks(self) -> tuple[CheckItem, ...]:
        """The checks selected to run (``-k``), in definition order."""
        return self.context.checks

    @property
    def mode(self) -> Mode:
        """``execute`` or ``read-only``, from the command line; it cannot be set."""
        return self.context.info.mode

    def _validate_fixtures(self, fixtures: FixtureManager) -> None:
        items: tuple[CheckItem | ActionItem, ...] = (*self.runbook.checks, *self.runbook.actions)
        for item in items:
            try:
                fixtures.validate(item.argnames)
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
        """Names of the targets of this run, in the order they were given."""
        if self.host_runs:  # a backend may name itself (plugin transports)
            return [host_run.name for host_run in self.host_runs]
        return [target.name for target in self.options.targets]

    def start_record(self) -> RunStart:
        """The frozen record ``runbook_run_started`` hands to plugins."""
        params = self.context.params
        overrides = {
            key: "***" if params.is_secret(key) else value
            for key, value in self.options.params.items()
        }
        return RunStart(
            runbook=self.runbook,
            checks=self.checks,
            targets=self.options.targets,
            hosts=tuple(self.host_names),
            info=self.context.info,
            overrides=overrides,
            redact=self.redactor.text,
            warn=self.warn,
        )

    def warn(self, warning: str) -> None:
        """Add a warning to the run's result, once."""
        if warning not in self.warnings:
            self.warnings.append(warning)

    def execute(self) -> RunResult:
        """Run every target and report; on Ctrl-C or a crash, still report what was found."""
        # Decided once, before any check runs, and passed down as a value: the gate of
        # the actions is not an attribute that check code could reach and change.
        may_act = self.options.execute
        trust_plugins(self.config.pluginmanager.get_plugins())  # they run in framework calls
        backends = [make_backend(self.config, target) for target in self.options.targets]
        self.host_runs = [
            HostRun(self.context, backend, target)
            for target, backend in zip(self.options.targets, backends, strict=True)
        ]
        self.config.hook.runbook_run_started(run=self.start_record())
        interrupted = False
        crash: BaseException | None = None
        try:
            crash = self._fan_out(may_act)
        except KeyboardInterrupt:
            interrupted = True
            self.context.stop.set()
            for host_run in self.host_runs:
                host_run.cancel()
            self.warnings.append("interrupted by the operator (Ctrl-C): this report is partial")
        finally:
            finish_all = self.context.fixtures.finish_all
            teardown = (
                guarded_teardown(self.host_runs[0], may_act, finish_all)
                if self.host_runs
                else finish_all()
            )
            self.warnings.extend(teardown)
        if crash is not None:  # a crashing plugin must not cost the report
            self.warnings.append(
                f"internal error, the run stopped: {type(crash).__name__}: {crash}"
            )
        result = self._with_severity(self._result(interrupted, crashed=crash is not None))
        groups = self.config.hook.runbook_report_sections(result=result)
        sections = [(title, self.redactor.text(body)) for g in groups for title, body in g or ()]
        result = dataclasses.replace(result, sections=tuple(sections))
        self.config.hook.runbook_run_finished(result=result)
        if crash is not None:
            raise crash
        return result

    def _fan_out(self, may_act: bool) -> BaseException | None:
        """Run the targets, ``forks`` at a time; return the first crash, if any."""
        if len(self.host_runs) == 1:
            try:
                self.host_runs[0].execute(may_act)
            except Exception as exc:
                return exc
            return None
        slots = threading.BoundedSemaphore(self.options.forks or DEFAULT_FORKS)
        crashes: list[BaseException] = []
        stop = self.context.stop

        def work(host_run: HostRun) -> None:
            with slots:
                if stop.is_set():
                    return
                try:
                    host_run.execute(may_act)
                except Exception as exc:
                    crashes.append(exc)
                    stop.set()

        threads = [
            threading.Thread(target=work, args=(h,), name=f"runbook-{h.name}", daemon=True)
            for h in self.host_runs
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():  # short joins keep Ctrl-C responsive
                thread.join(0.1)
        return crashes[0] if crashes else None

    def _with_severity(self, result: RunResult) -> RunResult:
        """Ask plugins what severity the findings suggest; record who set the final one."""
        try:
            suggested = suggest(self.config.pluginmanager, result, self.runbook.path)
        except Exception as exc:  # a crashing plugin must not cost the report
            warning = f"runbook_suggest_severity failed: {type(exc).__name__}: {exc}"
            warnings = (*result.warnings, self.redactor.text(warning))
            return dataclasses.replace(result, warnings=warnings)
        final, source = decide(
            self.options.severity, suggested, self.runbook.severity, found=has_findings(result)
        )
        return dataclasses.replace(
            result, severity=final, severity_suggested=suggested, severity_source=source
        )

    def _result(self, interrupted: bool, crashed: bool = False) -> RunResult:
        checks = tuple(c for h in self.host_runs for c in list(h.checks))
        actions = tuple(a for h in self.host_runs for a in list(h.actions))
        warnings = [*self.warnings, *(w for h in self.host_runs for w in h.warnings)]
        hosts = tuple(h.result for h in self.host_runs)
        hypotheses = judge(self.runbook.hypotheses, self.host_names, checks)
        info = self.context.info
        code = self._exit_code(interrupted, crashed, hypotheses, checks, actions, hosts)
        if code == ExitCode.NO_CHECKS:
            warnings.append(_NOTHING_TESTED)
        return RunResult(
            runbook={
                "name": self.runbook.name,
                "title": self.runbook.title,
                "description": self.runbook.description,
                "source": self.runbook.source,
            },
            mode=self.mode,
            incident=info.incident,
            severity=info.severity,
            operator=info.operator,
            started_at=info.started_at,
            finished_at=time.time(),
            exit_code=int(code),
            hosts=hosts,
            hypotheses=hypotheses,
            checks=checks,
            actions=actions,
            params=self.context.params.redacted(),
            report=self.options.report,
            json=self.options.json,
            interrupted=interrupted or crashed,
            warnings=tuple(self.redactor.text(warning) for warning in warnings),
            read_only_extensions=self._extensions(),
            replay=info.replay,
        )

    def _extensions(self) -> tuple[str, ...]:
        """Everything that widened the read-only allowlist, for the report to show."""
        where = self.config.inifile.name if self.config.inifile else "configuration"
        items = [f"{where} [read_only] allow: {entry}" for entry in self.config.read_only_allow]
        items += [
            f"@check {check.id} allow_commands: {entry}"
            for check in self.checks
            for entry in check.spec.allow_commands
        ]
        items += [
            f"plugin {impl.plugin_name} implements runbook_command_policy"
            for impl in self.config.hook.runbook_command_policy.get_hookimpls()
            if impl.plugin_name not in DEFAULT_PLUGINS  # built-in rules (docs/safety.md)
        ]
        return tuple(items)

    @staticmethod
    def _exit_code(
        interrupted: bool,
        crashed: bool,
        hypotheses: Sequence[HypothesisResult],
        checks: Sequence[CheckResult],
        actions: Sequence[ActionResult],
        hosts: Sequence[HostResult],
    ) -> ExitCode:
        if crashed:
            return ExitCode.INTERNAL_ERROR
        if interrupted:
            return ExitCode.INTERRUPTED
        bad_outcomes = {"failed", "error", "timeout", "blocked"}
        if (
            any(h.status == "ruled_in" for h in hypotheses)
            or any(r.outcome in bad_outcomes for r in checks)
            or any(h.status != "ok" for h in hosts)
            or any(a.status == "failed" for a in actions)
        ):
            return ExitCode.FINDINGS
        if all(r.outcome == "skipped" for r in checks) and all(
            h.status == "untested" for h in hypotheses
        ):
            return ExitCode.NO_CHECKS  # a green run must have looked at something
        return ExitCode.OK
