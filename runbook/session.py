"""The Session API: one typed entry point to everything runbook does.

The CLI, the pytest plugin (``runbook_runner``), lint and incidents all go
through a ``Session``: it loads the configuration and the plugins, collects
the runbooks, looks them up by name, and runs or plans them with
``RunOptions``. Front ends only parse their input and print::

    with Session.start() as session:
        runbook = session.lookup("disk-full")
        result = session.run(runbook, RunOptions(params={"path": "/var"}))
    print(result.exit_code)

Everything heavy is imported inside the methods that need it, so importing
this module (as the CLI does at start-up) costs nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from runbook.outcomes import ExitCode
from runbook.outcomes import UsageError
from runbook.records import RunOptions
from runbook.records import Target

if TYPE_CHECKING:
    from types import TracebackType

    from runbook.authoring.lint import Finding
    from runbook.authoring.plan import Plan
    from runbook.collect import Collection
    from runbook.config import Config
    from runbook.engine.runner import Run
    from runbook.hosts.cassette import Cassette
    from runbook.model import Runbook
    from runbook.results import RunResult


class Session:
    """Configuration, plugins and runbooks, ready to look up, run, plan and lint."""

    def __init__(self, config: Config, collection: Collection) -> None:
        self.config = config
        self.collection = collection
        self._closed = False
        self._replaying: str | None = None  # the cassette source, once replay() was called

    @classmethod
    def start(
        cls,
        options: Mapping[str, Any] | None = None,
        *,
        cwd: Path | None = None,
        config: Config | None = None,
    ) -> Session:
        """Load the configuration found from ``cwd`` (default: the working directory),
        register the plugins and collect the runbooks.

        ``options`` are command-line settings that win over the configuration file
        (``verbosity``, ``known_hosts``, ``junit_xml``, ...). A ``config`` already
        loaded (to ask plugins for their options) is used instead of loading it again.
        """
        from runbook.collect import collect
        from runbook.pluginmanager import load_config

        if config is None:
            config = load_config(options, start=cwd)
        else:
            config.options.update(options or {})
        return cls(config, collect(config))

    def close(self) -> None:
        """Let the plugins release what they took (``runbook_unconfigure``), once."""
        if not self._closed:
            self._closed = True
            self.config.hook.runbook_unconfigure(config=self.config)

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def lookup(self, name: str) -> Runbook:
        """The runbook called ``name``; a ``UsageError`` that suggests close names if none is."""
        return self.collection.lookup(name)

    def targets(
        self, hosts: Sequence[str] = (), inventory: str | None = None
    ) -> tuple[Target, ...]:
        """Resolve ``-H`` values (else the configured hosts, else ``local``) against the
        inventory given or configured, if any. An empty target list is a usage error."""
        from runbook.hosts.inventory import load_inventory
        from runbook.hosts.targets import parse_targets

        if hosts and not any(part.strip() for value in hosts for part in value.split(",")):
            raise UsageError(
                "-H/--host names no target (an empty value?): name a host, "
                "or leave -H out to run on this machine"
            )
        configured = self.config.values.get("inventory")
        path = (
            Path(inventory) if inventory else self.config.path(configured) if configured else None
        )
        loaded = load_inventory(path) if path is not None else None
        values = list(hosts) or list(self.config.values.get("hosts", [])) or ["local"]
        return tuple(parse_targets(values, loaded))

    def record(self, path: Path) -> None:
        """Record every command of the next run into the cassette at ``path``."""
        from runbook.files import check_writable
        from runbook.hosts.cassette import CassetteRecorder

        check_writable(path, "--record")
        self.config.pluginmanager.register(CassetteRecorder(path), "cassette-recorder")

    def replay(self, runbook: Runbook, cassette: Cassette, source: str) -> None:
        """Answer every command of the next run of ``runbook`` from ``cassette``.

        ``source`` names the cassette in messages (its file, or where canned outputs
        came from). No target is contacted.
        """
        from runbook.hosts.cassette import CassettePlayer

        if cassette.runbook != runbook.name:
            raise UsageError(
                f"cassette {source} was recorded for runbook {cassette.runbook!r}, "
                f"not {runbook.name!r}"
            )
        self.config.pluginmanager.register(CassettePlayer(cassette, source), "cassette-player")
        self._replaying = source

    def prepare(self, runbook: Runbook, options: RunOptions) -> Run:
        """Check parameters, fixtures and selection now: usage errors before any target."""
        from runbook.engine.runner import Run

        if self._replaying is not None:
            options = dataclasses.replace(options, replay=self._replaying)
        return Run(self.config, runbook, options, self.collection.plugin_fixtures)

    def run(self, runbook: Runbook, options: RunOptions) -> RunResult:
        """Run ``runbook`` and return its result (also after Ctrl-C: a partial one)."""
        return self.prepare(runbook, options).execute()

    def plan(self, run: Run, *, yes: bool = False) -> Plan:
        """What a prepared run would do, validated: no target contacted, nothing run."""
        from runbook.authoring.lint import lint_runbook
        from runbook.authoring.plan import build_plan
        from runbook.authoring.plan import resolve_hosts

        hosts = resolve_hosts(self.config, run.options.targets)
        findings = lint_runbook(run.runbook, self.collection.plugin_fixtures, run.context.policy)
        return build_plan(run, hosts, findings, yes=yes)

    def lint(self, names: Sequence[str] = ()) -> tuple[list[str], list[Finding]]:
        """Lint the named runbooks (default: all); return the names linted and the findings."""
        from runbook.authoring.lint import lint_collection

        return lint_collection(self.config, self.collection, names)

    def default_options(self, **given: Any) -> RunOptions:
        """``RunOptions`` from ``given`` (command-line values, None when not given),
        falling back to the configuration's ``forks`` and ``timeout``, checked here."""
        values = {key: value for key, value in given.items() if value is not None}
        for key, field, kind in (("forks", "forks", int), ("timeout", "check_timeout", float)):
            if field not in values and key in self.config.values:
                values[field] = _positive(self.config, key, self.config.values[key], kind)
        return dataclasses.replace(RunOptions(), **values)


def _positive(config: Config, key: str, value: object, kind: type[int] | type[float]) -> Any:
    """A configuration value that must be a positive number, or a one-line usage error."""
    where = config.inifile or "configuration"
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise UsageError(f"{where}: {key} must be a positive number, not {value!r}")
    if kind is int and not isinstance(value, int):
        raise UsageError(f"{where}: {key} must be a whole number, not {value!r}")
    return kind(value)


def combined_exit_code(codes: Sequence[int]) -> ExitCode:
    """The exit status of several runs: findings in any of them win over a clean run."""
    if ExitCode.FINDINGS in codes:
        return ExitCode.FINDINGS
    if codes and all(code == ExitCode.NO_CHECKS for code in codes):
        return ExitCode.NO_CHECKS
    return ExitCode.OK
