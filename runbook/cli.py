"""The ``runbook`` command line.

Only click and the leaf modules are imported at start-up; each command imports
what it needs, so ``runbook --help`` stays fast.
"""

from __future__ import annotations

import datetime
import difflib
import json
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

import click

from runbook.outcomes import CollectionError
from runbook.outcomes import ExitCode
from runbook.outcomes import UsageError

if TYPE_CHECKING:
    from runbook.collect import Collection
    from runbook.config import Config
    from runbook.model import ActionItem
    from runbook.model import Runbook
    from runbook.results import HypothesisResult
    from runbook.targets import Target

SEVERITIES = ("P0", "P1", "P2", "P3", "P4")


class RunbookGroup(click.Group):
    """A click group that maps every failure to a one-line error and our exit codes."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command with our exit codes; tracebacks only with ``--debug``."""
        argv = list(sys.argv[1:] if args is None else args)
        try:
            code = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:  # plain `runbook`: show help
            click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
            code = ExitCode.OK
        except click.UsageError as exc:
            exc.show()
            code = ExitCode.USAGE_ERROR
        except click.exceptions.Abort:
            click.echo("interrupted", err=True)
            code = ExitCode.INTERRUPTED
        except click.ClickException as exc:
            exc.show()
            code = exc.exit_code
        except (UsageError, CollectionError) as exc:
            click.echo(f"runbook: error: {exc}", err=True)
            code = ExitCode.USAGE_ERROR
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            code = ExitCode.INTERRUPTED
        except Exception as exc:
            if "--debug" in argv:
                traceback.print_exc()
            click.echo(
                f"runbook: internal error: {type(exc).__name__}: {exc} (run with --debug "
                "for the traceback)",
                err=True,
            )
            code = ExitCode.INTERNAL_ERROR
        code = int(code or 0)
        if standalone_mode:
            sys.exit(code)
        return code


@click.group(cls=RunbookGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="runbook")
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
def cli(debug: bool) -> None:
    """Incident runbooks as code: read-only checks that rule hypotheses in or out.

    \b
    Start with:
      runbook list                 the runbooks you can run
      runbook show high-cpu        what a runbook checks, and its parameters
      runbook run high-cpu         investigate this machine (read-only)
    """


def _setup(**options: Any) -> tuple[Config, Collection]:
    from runbook.collect import collect
    from runbook.config import load_config

    config = load_config(options)
    collection = collect(config)
    context = click.get_current_context(silent=True)
    if context is not None:
        context.call_on_close(lambda: config.hook.runbook_unconfigure(config=config))
    return config, collection


def _warn_errors(collection: Collection) -> None:
    for error in collection.errors:
        click.echo(f"runbook: error: cannot load {error}", err=True)


def _lookup(collection: Collection, name: str) -> Runbook:
    from runbook.collect import broken_runbook_names

    if name in collection.runbooks:
        return collection.runbooks[name]
    broken = broken_runbook_names(collection).get(name)
    if broken is not None:
        raise UsageError(f"runbook {name!r} cannot be loaded: {broken}")
    close = difflib.get_close_matches(name, list(collection.runbooks), n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UsageError(f"unknown runbook {name!r}.{hint} (`runbook list` shows them all)")


def _targets(config: Config, hosts: Sequence[str], inventory: str | None) -> tuple[Target, ...]:
    """Resolve ``-H`` values (or the configured hosts) against the inventory, if any."""
    from runbook.inventory import load_inventory
    from runbook.targets import parse_targets

    configured = config.values.get("inventory")
    path = Path(inventory) if inventory else config.path(configured) if configured else None
    loaded = load_inventory(path) if path is not None else None
    values = list(hosts) or list(config.values.get("hosts", [])) or ["local"]
    return tuple(parse_targets(values, loaded))


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


@cli.command()
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
@click.option("--record", type=click.Path(), help="Record commands and responses to a cassette.")
@click.option("--replay", type=click.Path(), help="Replay a cassette; contact no target.")
@click.option("--report", metavar="PATH|-", help="Markdown report path ('-' for stdout).")
@click.option("--json", "json_path", metavar="PATH|-", help="JSON result path ('-' for stdout).")
@click.option("--junit-xml", type=click.Path(), help="Write JUnit XML (a case per check and host).")
@click.option(
    "--forks",
    type=click.IntRange(1),
    default=None,
    help="Targets to run at once (default 16).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0, min_open=True),
    default=None,
    help="Seconds a check may take before it is stopped (default 60).",
)
@click.option("--incident", metavar="ID", help="Incident this run belongs to.")
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
    config, collection = _setup(
        verbosity=verbose - quiet,
        stdout_is_data=stdout_is_data,
        known_hosts=known_hosts,
        accept_new_host_keys=accept_new_host_keys or None,
    )
    runbooks = [_lookup(collection, name) for name in dict.fromkeys(names)]
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
        "severity": severity,
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


@cli.command(name="list")
@click.option("--tag", "tags", multiple=True, help="Only runbooks with this tag (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_(tags: tuple[str, ...], as_json: bool) -> int:
    """List the runbooks you can run, with where each one comes from."""
    from tabulate import tabulate

    _, collection = _setup()
    runbooks = [rb for rb in collection.runbooks.values() if not tags or set(tags) & set(rb.tags)]
    runbooks.sort(key=lambda rb: rb.name)
    if as_json:
        click.echo(json.dumps([_summary(rb) for rb in runbooks], indent=2))
    else:
        rows = [
            [rb.name, rb.title, len(rb.hypotheses), len(rb.checks), len(rb.actions), rb.source]
            for rb in runbooks
        ]
        headers = ["name", "title", "hypotheses", "checks", "actions", "source"]
        click.echo(tabulate(rows, headers=headers) if rows else "no runbooks found")
    for shadowed in collection.shadowed:
        winner = collection.runbooks[shadowed.name].source
        click.echo(
            f"note: {shadowed.name} from {shadowed.source} is shadowed by {winner}", err=True
        )
    _warn_errors(collection)
    return ExitCode.USAGE_ERROR if collection.errors else ExitCode.OK


def _summary(runbook: Runbook) -> dict[str, Any]:
    return {
        "name": runbook.name,
        "title": runbook.title,
        "hypotheses": [h.id for h in runbook.hypotheses],
        "checks": [c.id for c in runbook.checks],
        "actions": [a.id for a in runbook.actions],
        "tags": list(runbook.tags),
        "severity": runbook.severity,
        "source": runbook.source,
        "path": str(runbook.path),
    }


@cli.command()
@click.argument("name")
def show(name: str) -> int:
    """Show a runbook: hypotheses, checks, actions, parameters and description."""
    from tabulate import tabulate

    _, collection = _setup()
    runbook = _lookup(collection, name)
    click.echo(f"{runbook.name}: {runbook.title}")
    click.echo(f"source: {runbook.source} ({runbook.path})")
    if runbook.tags or runbook.severity:
        click.echo(f"tags: {', '.join(runbook.tags) or '-'}   severity: {runbook.severity or '-'}")
    if runbook.description:
        click.echo(f"\n{runbook.description}")
    click.echo("\nHypotheses:")
    for hypothesis in runbook.hypotheses:
        checks = [c.id for c in runbook.checks if hypothesis in c.tests]
        click.echo(f"  {hypothesis.id}: {hypothesis.statement}")
        click.echo(f"      tested by: {', '.join(checks) or 'NO CHECK'}")
    click.echo("\nChecks (in order):")
    for check in runbook.checks:
        tests = ", ".join(h.id for h in check.tests) or "symptom"
        needs = f", needs {check.spec.needs.id}" if check.spec.needs else ""
        summary = check.doc.splitlines()[0] if check.doc else ""
        click.echo(f"  {check.id} [{tests}{needs}] {summary}".rstrip())
    click.echo("\nActions (run only with --execute):")
    for action in runbook.actions or ():
        mitigates = ", ".join(h.id for h in action.spec.mitigates)
        summary = action.doc.splitlines()[0] if action.doc else ""
        click.echo(f"  {action.id} [mitigates {mitigates}] {summary}".rstrip())
    if not runbook.actions:
        click.echo("  none")
    if runbook.params:
        click.echo("\nParameters (--param KEY=VALUE):")
        rows = [[k, type(v).__name__, v] for k, v in runbook.params.items()]
        click.echo(tabulate(rows, headers=["name", "type", "default"], disable_numparse=True))
    return ExitCode.OK


@cli.command()
@click.argument("name")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False),
    default="runbooks",
    show_default=True,
    help="Folder to write the runbook and its test into.",
)
def new(name: str, directory: str) -> int:
    """Scaffold a new runbook NAME (and a test for it) from a template."""
    from runbook.scaffold import scaffold

    for path in scaffold(name, Path(directory)):
        click.echo(f"created {path}")
    click.echo(f"next: edit it, then `runbook run {name}`")
    return ExitCode.OK


@cli.command()
@click.argument("names", nargs=-1)
def lint(names: tuple[str, ...]) -> int:
    """Check runbooks without running them (all, or NAME...); exit 1 on findings."""
    from tabulate import tabulate

    from runbook.lint import from_collection_error
    from runbook.lint import lint_runbook

    config, collection = _setup()
    runbooks = (
        [_lookup(collection, name) for name in names]
        if names
        else sorted(collection.runbooks.values(), key=lambda rb: rb.name)
    )
    findings = [] if names else [from_collection_error(e) for e in collection.errors]
    for runbook in runbooks:
        findings += lint_runbook(runbook, collection.plugin_fixtures, config.read_only_allow)
    if findings:
        rows = [[f.location, f.rule, f.message] for f in findings]
        click.echo(tabulate(rows, headers=["where", "rule", "finding"]))
        click.echo(f"\n{len(findings)} finding(s) in {len(runbooks)} runbook(s)")
        return ExitCode.FINDINGS
    click.echo(f"{len(runbooks)} runbook(s) clean")
    return ExitCode.OK


@cli.command(name="report")
@click.argument("result", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--template",
    type=click.Path(exists=True, dir_okay=False),
    help="A jinja2 template to render instead of the built-in one.",
)
@click.option("-o", "--output", metavar="PATH", help="Write here instead of standard output.")
def report_(result: str, template: str | None, output: str | None) -> int:
    """Re-render the Markdown report of a JSON RESULT."""
    from runbook.files import write_private
    from runbook.report import render_markdown
    from runbook.results import SCHEMA

    try:
        data = json.loads(Path(result).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{result}: not a readable JSON result: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise UsageError(f"{result}: not a runbook result (expected schema {SCHEMA!r})")
    import jinja2

    try:
        text = render_markdown(data, Path(template) if template else None)
    except jinja2.TemplateError as exc:
        raise UsageError(f"{template or 'report template'}: {exc}") from None
    if output:
        write_private(Path(output), text)
        click.echo(f"report: {output}")
    else:
        click.echo(text, nl=False)
    return ExitCode.OK


@cli.group()
def audit() -> None:
    """Inspect the audit log of commands and actions."""


@audit.command(name="verify")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
def audit_verify(path: str | None) -> int:
    """Check the hash chain of the audit log (default: the configured one); exit 1 if broken."""
    from runbook.audit import default_audit_path
    from runbook.audit import verify
    from runbook.config import load_config

    if path is None:
        config = load_config()
        configured = config.get("audit_log")
        log = config.path(configured) if configured else default_audit_path()
    else:
        log = Path(path)
    try:
        verification = verify(log)
    except OSError as exc:
        raise UsageError(f"cannot read the audit log {log}: {exc}") from None
    if verification.ok:
        click.echo(f"{log}: ok, {verification.records} records, hash chain intact")
        return ExitCode.OK
    click.echo(f"{log}: TAMPERED OR DAMAGED: {verification.problem}", err=True)
    click.echo(f"{verification.records} records verified before the problem", err=True)
    return ExitCode.FINDINGS


@cli.command()
def plugins() -> int:
    """List loaded plugins with their hooks, and the fixtures they provide."""
    config, collection = _setup()
    pm = config.pluginmanager
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        hooks = sorted(hc.name for hc in pm.get_hookcallers(plugin) or ())
        click.echo(f"{name}")
        if hooks:
            click.echo(f"    hooks: {', '.join(hooks)}")
    fixtures = sorted(collection.plugin_fixtures, key=lambda f: f.name)
    click.echo("\nfixtures:")
    click.echo("  host, params, run_info, findings (built in)")
    for fixture in fixtures:
        click.echo(f"  {fixture.name} ({fixture.scope} scope) from {fixture.origin}")
    _warn_errors(collection)
    return ExitCode.OK


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="runbook")
