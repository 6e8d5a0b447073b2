"""``runbook run``: resolve targets and parameters, then run or dry-run the runbooks."""

from __future__ import annotations

import datetime
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

import click

from runbook.model import SEVERITIES
from runbook.outcomes import ExitCode
from runbook.outcomes import UsageError
from runbook.session import lookup
from runbook.session import setup

if TYPE_CHECKING:
    from runbook.collect import Collection
    from runbook.config import Config
    from runbook.model import ActionItem
    from runbook.model import Runbook
    from runbook.results import HypothesisResult
    from runbook.targets import Target


def _targets(config: Config, hosts: Sequence[str], inventory: str | None) -> tuple[Target, ...]:
    """Resolve ``-H`` values (or the configured hosts) against the inventory, if any."""
    from runbook.inventory import load_inventory
    from runbook.targets import parse_targets

    configured = config.values.get("inventory")
    path = Path(inventory) if inventory else config.path(configured) if configured else None
    loaded = load_inventory(path) if path is not None else None
    values = list(hosts) or list(config.values.get("hosts", [])) or ["local"]
    return tuple(parse_targets(values, loaded))


def _incident_id(value: str | None) -> str | None:
    from runbook.incidents import check_id

    return None if value is None else check_id(value)


def _incident_severity(config: Config, incident: str | None) -> str | None:
    """The severity an operator gave the incident, if any (not one a runbook suggested)."""
    from runbook.incidents import IncidentStore

    store = IncidentStore.from_config(config)
    if not incident or not store.exists(incident):
        return None
    state = store.load(incident)
    by_operator = str(state.get("severity_set_by") or "").startswith("operator")
    return state.get("severity") if by_operator else None


def _timestamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _result_paths(
    config: Config, name: str, report: str | None, json_path: str | None, stamp: str
) -> tuple[str, str]:
    folder = config.report_dir
    default = folder / f"{stamp}-{name}"
    return (
        report if report is not None else _display(default.with_suffix(".md")),
        json_path if json_path is not None else _display(default.with_suffix(".json")),
    )


def _confirmer(yes: bool) -> Any:
    def confirm(
        action: ActionItem, host: str, judged: Sequence[HypothesisResult]
    ) -> tuple[bool, str]:
        if yes:
            return True, ""
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            return False, "no terminal to confirm on; pass --yes to run actions unattended"
        click.echo(f"\nAction {action.id} on {host}: {action.doc or '(no description)'}")
        for item in judged:
            if item.status == "ruled_in":
                click.echo(f"  {item.id} ruled in: {'; '.join(item.evidence)}")
        if click.confirm(f"Run {action.id} on {host}?", default=False):
            return True, ""
        return False, "declined by the operator"

    return confirm


UNAVAILABLE = {
    "record": "--record",
    "replay": "--replay",
    "junit_xml": "--junit-xml",
}


@click.command(short_help="Investigate with runbooks NAME... (read-only unless --execute).")
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
    "--known-hosts",
    type=click.Path(dir_okay=False),
    help="known_hosts file for SSH host keys (default ~/.ssh/known_hosts).",
)
@click.option(
    "--accept-new-host-keys",
    is_flag=True,
    help="Trust and record the key of a host never seen before (a changed key is refused).",
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
@click.option("--record", type=click.Path(), help="Record a cassette (not available yet).")
@click.option("--replay", type=click.Path(), help="Replay a cassette (not available yet).")
@click.option("--report", metavar="PATH|-", help="Markdown report path ('-' for stdout).")
@click.option("--json", "json_path", metavar="PATH|-", help="JSON result path ('-' for stdout).")
@click.option("--junit-xml", type=click.Path(), help="Write JUnit XML (not available yet).")
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
    report: str | None,
    json_path: str | None,
    forks: int | None,
    inventory: str | None,
    known_hosts: str | None,
    accept_new_host_keys: bool,
    timeout: float | None,
    incident: str | None,
    severity: str | None,
    verbose: int,
    quiet: int,
    **unavailable: Any,
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

    Exit status: 0 nothing found, 1 a hypothesis ruled in or a check failed,
    2 interrupted, 3 internal error, 4 usage error, 5 nothing selected.
    """
    for key, flag in UNAVAILABLE.items():
        if unavailable.get(key):
            raise UsageError(f"{flag} is not available in this version of runbook")
    if len(names) > 1 and any(p not in (None, "-") for p in (report, json_path)):
        raise UsageError("--report/--json name one file: give them with a single runbook")
    from runbook.params import parse_assignments

    overrides = parse_assignments(list(params))
    stdout_is_data = "-" in (report, json_path)
    config, collection = setup(
        verbosity=verbose - quiet,
        stdout_is_data=stdout_is_data,
        known_hosts=known_hosts,
        accept_new_host_keys=accept_new_host_keys or None,
    )
    runbooks = [lookup(collection, name) for name in dict.fromkeys(names)]
    targets = _targets(config, hosts, inventory)
    if dry_run:
        return _dry_run(config, collection, runbooks, targets, overrides, keyword)
    settings = {
        "report": report,
        "json_path": json_path,
        "execute": execute,
        "yes": yes,
        "timeout": timeout,
        "forks": forks,
        "incident": incident,
        "severity": severity or _incident_severity(config, incident),
    }
    return _run_all(config, collection, runbooks, targets, overrides, keyword, settings)


def _run_all(
    config: Config,
    collection: Collection,
    runbooks: list[Runbook],
    targets: tuple[Target, ...],
    overrides: dict[str, str],
    keyword: str | None,
    cli_options: dict[str, Any],
) -> int:
    from runbook.runner import Run
    from runbook.runner import RunOptions

    stamp = _timestamp()
    prepared = []
    for runbook in runbooks:
        report, json_path = _result_paths(
            config, runbook.name, cli_options["report"], cli_options["json_path"], stamp
        )
        options = RunOptions(
            targets=targets,
            forks=cli_options["forks"] or config.values.get("forks"),
            params=overrides,
            keyword=keyword,
            execute=cli_options["execute"],
            confirm=_confirmer(cli_options["yes"]),
            check_timeout=cli_options["timeout"] or config.values.get("timeout"),
            incident=cli_options["incident"],
            severity=cli_options["severity"],
            report=report,
            json=json_path,
        )
        run = Run(config, runbook, options, collection.plugin_fixtures)
        if run.checks:
            prepared.append(run)
        else:
            click.echo(f"runbook {runbook.name}: no check selected", err=True)
    if not prepared:
        return ExitCode.NO_CHECKS
    codes = []
    for run in prepared:
        result = run.execute()
        codes.append(result.exit_code)
        if result.interrupted:
            return ExitCode.INTERRUPTED
    return ExitCode.FINDINGS if ExitCode.FINDINGS in codes else ExitCode.OK


def _dry_run(
    config: Config,
    collection: Collection,
    runbooks: list[Runbook],
    targets: tuple[Target, ...],
    overrides: dict[str, str],
    keyword: str | None,
) -> int:
    from runbook.lint import lint_runbook
    from runbook.runner import Run
    from runbook.runner import RunOptions

    worst = ExitCode.OK
    for runbook in runbooks:
        run = Run(
            config,
            runbook,
            RunOptions(targets=targets, params=overrides, keyword=keyword),
            collection.plugin_fixtures,
        )
        actions = ", ".join(a.id for a in runbook.actions) or "none"
        click.echo(
            f"{runbook.name}: {len(run.checks)} read-only checks on {len(targets)} "
            f"host{'s' if len(targets) != 1 else ''}; {len(runbook.actions)} actions that "
            f"change state ({actions}), gated by --execute and confirmation"
        )
        for item in run.checks:
            tests = ", ".join(h.id for h in item.tests) or "symptom"
            needs = f" (after {item.spec.needs.id} is ruled in)" if item.spec.needs else ""
            click.echo(f"  check  {item.id} [{tests}]{needs}")
        for action in runbook.actions:
            mitigates = ", ".join(h.id for h in action.spec.mitigates)
            click.echo(f"  action {action.id} [mitigates {mitigates}]")
        findings = lint_runbook(runbook, collection.plugin_fixtures, config.read_only_allow)
        for finding in findings:
            click.echo(f"  {finding.location}: {finding.rule}: {finding.message}")
            worst = ExitCode.FINDINGS
        if not run.checks:
            worst = max(worst, ExitCode.NO_CHECKS)
    return worst
