"""The ``runbook`` command line.

Only click and the leaf modules are imported at start-up; each command imports
what it needs, so ``runbook --help`` stays fast.
"""

from __future__ import annotations

import json
import shlex
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

import click

from runbook.cli import open_session
from runbook.cli import warn_errors
from runbook.cli import write_rendered
from runbook.cli.incident import incident
from runbook.cli.incident import postmortem
from runbook.cli.run import run
from runbook.outcomes import CollectionError
from runbook.outcomes import ExitCode
from runbook.outcomes import UsageError

if TYPE_CHECKING:
    from runbook.model import Runbook


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


@cli.command(name="list")
@click.option("--tag", "tags", multiple=True, help="Only runbooks with this tag (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_(tags: tuple[str, ...], as_json: bool) -> int:
    """List the runbooks you can run, with where each one comes from."""
    from tabulate import tabulate

    collection = open_session().collection
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
        # The column types are known: guessing them cell by cell is most of the time
        # tabulate takes over a thousand runbooks.
        aligns = ("left", "left", "right", "right", "right", "left")
        table = tabulate(rows, headers=headers, disable_numparse=True, colalign=aligns)
        click.echo(table if rows else "no runbooks found")
    for shadowed in collection.shadowed:
        winner = collection.runbooks[shadowed.name].source
        click.echo(
            f"note: {shadowed.name} from {shadowed.source} is shadowed by {winner}", err=True
        )
    warn_errors(collection)
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
@click.option("--markdown", is_flag=True, help="Print the runbook's reference page in Markdown.")
def show(name: str, markdown: bool) -> int:
    """Show a runbook: hypotheses, checks, actions, parameters and description."""
    from tabulate import tabulate

    runbook = open_session().lookup(name)
    if markdown:
        from runbook.authoring.runbookdoc import markdown_page

        click.echo(markdown_page(runbook), nl=False)
        return ExitCode.OK
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
        from runbook.params import is_required
        from runbook.params import param_type

        rows = [
            [k, param_type(v).__name__, "(required)" if is_required(v) else v]
            for k, v in runbook.params.items()
        ]
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
    from runbook.authoring.scaffold import scaffold
    from runbook.collect import library_dir

    folder = Path(directory)
    for path in scaffold(name, folder):
        click.echo(f"created {path}")
    if (library_dir() / f"{name.replace('-', '_')}.py").exists():
        click.echo(f"note: it shadows the built-in runbook {name} where it is collected")
    collected = folder.resolve() == (Path.cwd() / "runbooks").resolve()
    where = "" if collected else f"RUNBOOK_PATH={shlex.quote(directory)} "
    click.echo(f"next: edit it, then `{where}runbook run {name}`")
    if not collected:
        click.echo(f"(or add {directory!r} to `paths` in runbook.toml so it is always found)")
    return ExitCode.OK


@cli.command()
@click.argument("names", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def lint(names: tuple[str, ...], as_json: bool) -> int:
    """Check runbooks without running them (all, or NAME...); exit 1 on findings.

    \b
    Rules: imports, docstring, hypothesis-unique, hypothesis-tested, needs,
    action-mitigates, fixtures, params, read-only (see docs/cli.md).
    """
    from tabulate import tabulate

    from runbook.authoring.lint import SCHEMA

    linted, findings = open_session().lint(names)
    if as_json:
        data = {
            "schema": SCHEMA,
            "runbooks": linted,
            "findings": [f.to_dict() for f in findings],
        }
        click.echo(json.dumps(data, indent=2))
    elif findings:
        rows = [[f.location, f.runbook or "-", f.rule, f.message] for f in findings]
        click.echo(tabulate(rows, headers=["where", "runbook", "rule", "finding"]))
        click.echo(f"\n{len(findings)} finding(s) in {len(linted)} runbook(s)")
    else:
        click.echo(f"{len(linted)} runbook(s) clean")
    return ExitCode.FINDINGS if findings else ExitCode.OK


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
    from runbook.output.report import render_markdown
    from runbook.results import SCHEMA

    try:
        data = json.loads(Path(result).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{result}: not a readable JSON result: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise UsageError(f"{result}: not a runbook result (expected schema {SCHEMA!r})")
    write_rendered(lambda chosen: render_markdown(data, chosen), template, output, "report")
    return ExitCode.OK


@cli.group()
def audit() -> None:
    """Inspect the audit log of commands and actions."""


@audit.command(name="verify")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
def audit_verify(path: str | None) -> int:
    """Check the hash chain of the audit log (default: the configured one); exit 1 if broken."""
    from runbook.pluginmanager import load_config
    from runbook.safety.audit import default_audit_path
    from runbook.safety.audit import verify

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
    session = open_session()
    pm, collection = session.config.pluginmanager, session.collection
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
    warn_errors(collection)
    return ExitCode.OK


cli.add_command(run)
cli.add_command(incident)
cli.add_command(postmortem)


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="runbook")
