"""Hook specifications: the reference for plugin authors.

Every hook takes keyword arguments. Implement one in any module registered as a
plugin (an entry point in the ``runbook`` group, a ``runbookconf.py`` next to
runbooks, or a module listed under ``plugins`` in the configuration)::

    from runbook import hookimpl

    @hookimpl
    def runbook_run_finished(result):
        ...
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from runbook.markers import hookspec

if TYPE_CHECKING:
    from runbook.config import Config
    from runbook.hosts.backend import Backend
    from runbook.model import ActionItem
    from runbook.model import CheckItem
    from runbook.optionparser import OptionParser
    from runbook.records import Delivery
    from runbook.records import RunStart
    from runbook.records import StatusUpdate
    from runbook.results import ActionResult
    from runbook.results import CheckResult
    from runbook.results import HostResult
    from runbook.results import RunResult
    from runbook.steps import CommandRecord
    from runbook.steps import Step


@hookspec(historic=True)
def runbook_configure(config: Config) -> None:
    """Called once after the configuration and installed plugins are loaded.

    Historic: a plugin registered later (a ``runbookconf.py``) is called when it
    registers. Use it to read options from ``config`` and register further plugins.
    """


@hookspec
def runbook_addoption(parser: OptionParser) -> None:
    """Declare options of ``runbook run`` with ``parser.addoption(...)``.

    Called before the command line is parsed, for the built-in plugins and those
    named in the configuration (entry-point and ``runbookconf.py`` plugins load
    later: they read configuration keys instead). A value given on the command
    line reaches ``config.get(name)``, which otherwise reads the configuration
    key of the same name.
    """


@hookspec
def runbook_collect(config: Config) -> Sequence[Path] | None:
    """Return extra folders (or single files) to collect runbooks from.

    Results of all implementations are combined. Runbooks in earlier sources
    shadow runbooks of the same name in later ones; local folders come first
    and the built-in library last.
    """


@hookspec(firstresult=True)
def runbook_make_host(spec: str, config: Config) -> Backend | None:
    """Return a backend for the target ``spec`` (as given to ``--host``), or None.

    The first non-None result wins. The local backend answers ``local``;
    plugins add transports (docker, kubectl, ...) by answering their own specs.
    """


@hookspec
def runbook_command_policy(command: str, mode: str, step: Step) -> str | None:
    """Classify a command a read-only check wants to run.

    Return ``"allow"`` to allow it, ``"refuse"`` (or ``"refuse: reason"``) to refuse it,
    or None to leave the decision to others. A refusal from any plugin wins over
    an allowance; with no opinion from any plugin, the built-in policy decides.
    ``mode`` is ``"read-only"`` or ``"execute"``.
    """


@hookspec
def runbook_run_started(run: RunStart) -> None:
    """Called when a runbook starts running, before any target is contacted.

    ``run`` is a frozen ``RunStart``: ``run.runbook`` is the runbook, ``run.checks``
    the selected checks, ``run.targets`` and ``run.hosts`` the targets and their
    names, ``run.mode`` the mode and ``run.info`` who runs it, when, for which incident.
    """


@hookspec
def runbook_check_started(check: CheckItem, host: str) -> None:
    """Called before a check runs on a host (``host`` is the target's name)."""


@hookspec
def runbook_command_finished(record: CommandRecord) -> None:
    """Called after every command a check or action sent to a target, as it happens.

    Refused commands are reported too (``record.blocked``). Called on the
    step's worker thread; the record is already redacted.
    """


@hookspec
def runbook_check_finished(result: CheckResult) -> None:
    """Called with the immutable result of every check on every host, as it finishes."""


@hookspec
def runbook_action_started(action: ActionItem, host: str) -> None:
    """Called just before an action changes a target (confirmed, in execute mode).

    Not called for actions that are only planned, not needed or declined. An
    audit log writes its intent record here.
    """


@hookspec
def runbook_action_finished(result: ActionResult) -> None:
    """Called with the result of every action on every host (planned ones too)."""


@hookspec
def runbook_host_finished(result: HostResult) -> None:
    """Called when a target is done: all its checks and actions ran, or it was unreachable.

    ``result.status`` is ``ok``, ``unreachable``, ``auth_failed``,
    ``host_key_rejected`` or ``error`` (with ``result.error`` saying why).
    Targets run in parallel, so this is called from their threads.
    """


@hookspec
def runbook_report_sections(result: RunResult) -> list[tuple[str, str]] | None:
    """Return extra ``(title, markdown)`` sections for the incident report."""


@hookspec
def runbook_suggest_severity(result: RunResult) -> str | None:
    """Return a severity (``"P0"``..``"P4"``) that the findings of ``result`` suggest, or None.

    Called once per run, after the checks and actions, before the report is written.
    The most severe answer wins; it becomes the run's severity unless the operator set
    one (``--severity``, or the incident's). An implementation in a runbook module is
    only asked about that runbook's runs.
    """


@hookspec
def runbook_status_update(update: StatusUpdate) -> list[Delivery] | None:
    """Deliver an incident status update; return one ``Delivery`` per destination tried.

    Called when a run under ``--incident`` starts (investigating), when it first rules
    a hypothesis in (identified), after its actions ran (monitoring) and when the
    incident's status changes (``runbook incident status``). Must not raise for a
    failed delivery: return ``Delivery(ok=False, ...)`` and the run goes on.
    """


@hookspec
def runbook_run_finished(result: RunResult) -> None:
    """Called once per runbook run with the final result (also after Ctrl-C).

    Reporters write their files here; notifiers send their messages.
    """


@hookspec
def runbook_unconfigure(config: Config) -> None:
    """Called once before the process exits; release what ``runbook_configure`` took."""


def hook_names() -> list[str]:
    """Return the names of all hook specifications, for docs and tests."""
    namespace: dict[str, Any] = globals()
    return sorted(name for name in namespace if name.startswith("runbook_"))
