"""``runbook run``: parse the options, then run or dry-run the runbooks through the Session."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Iterator
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

import click

from runbook.cli import CONFIG_KEY
from runbook.cli import open_session
from runbook.files import check_writable
from runbook.files import claim_private
from runbook.files import release_claim
from runbook.outcomes import ExitCode
from runbook.outcomes import UsageError
from runbook.records import Confirm
from runbook.session import combined_exit_code
from runbook.severity import SEVERITIES
from runbook.timestamps import file_stamp

if TYPE_CHECKING:
    from runbook.config import Config
    from runbook.model import ActionItem
    from runbook.model import Runbook
    from runbook.records import RunOptions
    from runbook.results import HypothesisResult
    from runbook.session import Session


class RunCommand(click.Command):
    """``runbook run``, with the options that plugins declare (``runbook_addoption``).

    The plugin manager is built before the arguments are parsed, as pytest does,
    and handed to the session the command then opens.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        from runbook.optionparser import OptionParser
        from runbook.pluginmanager import load_config

        config = load_config()
        parser = OptionParser()
        config.hook.runbook_addoption(parser=parser)
        ctx.meta[CONFIG_KEY] = config
        ctx.meta[_PLUGIN_OPTIONS] = parser.options
        return super().parse_args(ctx, args)

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        """The command's own options, then those the plugins of this call declared.

        They live on the context, not on the command: plugins may differ between calls.
        """
        params = super().get_params(ctx)
        known = {name for param in params for name in param.opts}
        declared = ctx.meta.get(_PLUGIN_OPTIONS, ())
        return params + [option for option in declared if known.isdisjoint(option.opts)]


#: Where ``RunCommand`` keeps the options the plugins declared for this call.
_PLUGIN_OPTIONS = "runbook.plugin_options"


def _incident_id(value: str | None) -> str | None:
    from runbook.incident.store import check_id

    return None if value is None else check_id(value)


def _incident_severity(config: Config, incident: str | None) -> str | None:
    """The severity an operator gave the incident, if any (not one a runbook suggested)."""
    from runbook.incident.store import IncidentStore

    store = IncidentStore.from_config(config)
    if not incident or not store.exists(incident):
        return None
    state = store.load(incident)
    by_operator = str(state.get("severity_set_by") or "").startswith("operator")
    return state.get("severity") if by_operator else None


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _confirmer(yes: bool) -> Confirm:
    def confirm(
        action: ActionItem, host: str, judged: Sequence[HypothesisResult], described: str
    ) -> tuple[bool, str]:
        if yes:
            return True, ""
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            return False, "no terminal to confirm on; pass --yes to run actions unattended"
        click.echo(f"\nAction {action.id} on {host}: {described}")
        for item in judged:
            if item.status == "ruled_in":
                click.echo(f"  {item.id} ruled in: {'; '.join(item.evidence)}")
        if click.confirm(f"Run {action.id} on {host}?", default=False):
            return True, ""
        return False, "declined by the operator"

    return confirm


@click.command(
    cls=RunCommand, short_help="Investigate with runbooks NAME... (read-only unless --execute)."
)
@click.argument("names", nargs=-1, required=True, metavar="NAME [NAME...]")
@click.option(
    "-H",
    "--host",
    "hosts",
    multiple=True,
    metavar="HOST",
    help="Target: local (default), [user@]host[:port] or ssh://...; repeatable, comma lists.",
)
@click.option(
    "-i",
    "--inventory",
    type=click.Path(dir_okay=False),
    help="Inventory of hosts and groups (Ansible-style INI or YAML); -H takes their names.",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a parameter; the value is coerced to the default's type.",
)
@click.option(
    "-k",
    "keyword",
    metavar="EXPR",
    help="Only run checks whose name or hypothesis matches, e.g. 'cpu and not steal'.",
)
@click.option("--execute", is_flag=True, help="Let actions change the system (after confirming).")
@click.option("--yes", is_flag=True, help="Do not ask before each action (with --execute).")
@click.option("--dry-run", is_flag=True, help="Validate and print the plan; contact no target.")
@click.option(
    "--record",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Record every command and its output (redacted) into a cassette FILE.",
)
@click.option(
    "--replay",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Answer every command from a recorded cassette FILE; contact no target.",
)
@click.option("--report", metavar="PATH|-", help="Markdown report path ('-' for stdout).")
@click.option("--json", "json_path", metavar="PATH|-", help="JSON result path ('-' for stdout).")
@click.option(
    "--forks",
    type=click.IntRange(1),
    default=None,
    metavar="N",
    help="Targets to run at once (default 16).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0, min_open=True),
    default=None,
    help="Seconds a check may take before it is stopped (default 60).",
)
@click.option(
    "--incident",
    metavar="ID",
    callback=lambda _context, _option, value: _incident_id(value),
    help="Record this run in incident ID (created if new; see `runbook incident`).",
)
@click.option("--severity", type=click.Choice(SEVERITIES), help="Incident severity.")
@click.option("-v", "--verbose", count=True, help="Show messages of passed checks and tracebacks.")
@click.option("-q", "--quiet", count=True, help="Only print the summary.")
def run(
    names: tuple[str, ...],
    hosts: tuple[str, ...],
    params: tuple[str, ...],
    keyword: str | None,
    execute: bool,
    yes: bool,
    dry_run: bool,
    record: str | None,
    replay: str | None,
    report: str | None,
    json_path: str | None,
    forks: int | None,
    inventory: str | None,
    timeout: float | None,
    incident: str | None,
    severity: str | None,
    verbose: int,
    quiet: int,
    **plugin_options: Any,
) -> int:
    """Run runbooks NAME... against targets (read-only unless --execute).

    Checks run in definition order and rule hypotheses in or out; actions are
    only planned unless --execute is given. Writes a Markdown report and a JSON
    result under the report directory and prints their paths.

    \b
    Examples:
      runbook run high-cpu                          this machine
      runbook run disk-full -H web1,web2 --param path=/var
      runbook run high-cpu -i hosts.ini -H web      an inventory group, in parallel
      runbook run high-cpu --execute                run actions, after confirming
      runbook run disk-full --record incident.yaml  keep every command's output
      runbook run disk-full --replay incident.yaml  run again from it, in CI

    Exit status: 0 nothing found, 1 a hypothesis ruled in or a check failed,
    2 interrupted, 3 internal error, 4 usage error, 5 nothing selected.
    """
    if len(names) > 1 and any(p not in (None, "-") for p in (report, json_path)):
        raise UsageError("--report/--json name one file: give them with a single runbook")
    if record and replay:
        raise UsageError("--record and --replay exclude each other")
    from runbook.params import parse_assignments

    overrides = parse_assignments(list(params))
    given = {key: value for key, value in plugin_options.items() if value not in (None, False)}
    session = open_session(
        verbosity=verbose - quiet,
        stdout_is_data="-" in (report, json_path),
        dry_run=dry_run,
        **given,
    )
    runbooks = [session.lookup(name) for name in dict.fromkeys(names)]
    if replay:
        from runbook.hosts.cassette import Cassette

        _cassette_fits("--replay", runbooks, execute or dry_run)
        cassette = Cassette.load(Path(replay))
        session.replay(runbooks[0], cassette, replay)
        chosen = [part.strip() for value in hosts for part in value.split(",") if part.strip()]
        targets = cassette.targets(chosen)
        overrides = {**cassette.params, **overrides}
    else:
        targets = session.targets(hosts, inventory)
    if record:
        _cassette_fits("--record", runbooks, execute or dry_run)
        session.record(Path(record))
    options = session.default_options(
        targets=targets,
        forks=forks,
        params=overrides,
        keyword=keyword,
        execute=execute,
        confirm=_confirmer(yes),
        check_timeout=timeout,
        incident=incident,
        severity=severity or _incident_severity(session.config, incident),
    )
    if dry_run:
        return _dry_run(session, runbooks, options, (report, json_path), yes)
    return _run_all(session, runbooks, options, (report, json_path))


def _cassette_fits(flag: str, runbooks: list[Runbook], changes: bool) -> None:
    if len(runbooks) > 1:
        raise UsageError(f"{flag} names one cassette: give it with a single runbook")
    if changes:
        raise UsageError(f"{flag} works with read-only runs: drop --execute and --dry-run")


class _NothingSelected(Exception):
    """``-k`` selected none of a runbook's checks: it does not run."""


@contextlib.contextmanager
def _result_files(
    session: Session, options: RunOptions, name: str, stamp: str, given: tuple[str | None, ...]
) -> Iterator[RunOptions]:
    """``options`` with the report and JSON paths of the run (or plan) called ``name``.

    Default paths are claimed at once, so two runs started in the same second get
    different names; they are released again if the run does not start.
    """
    report, json_path = given
    missing = [suffix for suffix, path in ((".md", report), (".json", json_path)) if path is None]
    claimed: list[Path] = []
    folder = session.config.report_dir
    new_folder = not folder.exists()
    if missing:
        stem = claim_private(folder / f"{stamp}-{name}", missing)
        claimed = [stem.with_name(stem.name + suffix) for suffix in missing]
        defaults = dict(zip(missing, (_display(path) for path in claimed), strict=True))
        report = report if report is not None else defaults[".md"]
        json_path = json_path if json_path is not None else defaults[".json"]
    try:
        yield dataclasses.replace(options, report=report, json=json_path)
    except BaseException:
        for path in claimed:
            release_claim(path)
        if new_folder:
            with contextlib.suppress(OSError):  # not empty: another run's files
                folder.rmdir()
        raise


def _check_result_files(options: RunOptions) -> None:
    """Fail now, not after the run, when a result file cannot be written."""
    for path, option in ((options.report, "--report"), (options.json, "--json")):
        if path is not None and path != "-":
            check_writable(Path(path), option)


def _run_all(
    session: Session,
    runbooks: list[Runbook],
    options: RunOptions,
    given: tuple[str | None, ...],
) -> int:
    stamp = file_stamp()
    prepared = []
    for runbook in runbooks:
        try:
            with _result_files(session, options, runbook.name, stamp, given) as with_files:
                run = session.prepare(runbook, with_files)
                _check_result_files(with_files)
                if not run.checks:
                    raise _NothingSelected  # its result files are released
        except _NothingSelected:
            click.echo(f"runbook {runbook.name}: no check selected", err=True)
            continue
        prepared.append(run)
    if not prepared:
        return ExitCode.NO_CHECKS
    codes = []
    for run in prepared:
        result = run.execute()
        codes.append(result.exit_code)
        if result.interrupted:
            return ExitCode.INTERRUPTED
    return combined_exit_code(codes)


def _dry_run(
    session: Session,
    runbooks: list[Runbook],
    options: RunOptions,
    given: tuple[str | None, ...],
    yes: bool,
) -> int:
    """Validate and write the plan of each runbook; contact no target, run no check."""
    from runbook.authoring.plan import render_text
    from runbook.authoring.plan import write_plan

    to_stderr = "-" in given
    stamp = file_stamp()
    codes = []
    for runbook in runbooks:
        with _result_files(session, options, f"{runbook.name}-plan", stamp, given) as with_files:
            plan = session.plan(session.prepare(runbook, with_files), yes=yes)
            _check_result_files(with_files)
        for line in render_text(plan):
            click.echo(line, err=to_stderr)
        for label, path in write_plan(plan):
            click.echo(f"{label}: {path}", err=to_stderr)
        codes.append(plan.exit_code)
    return combined_exit_code(codes)
