"""Static validation of runbooks, shared by ``runbook lint`` and ``run --dry-run``.

Nothing here runs a check or contacts a target: the rules read the collected
runbook and its source. ``RULES`` lists them with what each one wants.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from collections.abc import Iterable
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from runbook.collect import broken_runbook_names
from runbook.fixtures import FixtureDef
from runbook.fixtures import FixtureError
from runbook.fixtures import FixtureManager
from runbook.model import ActionItem
from runbook.model import CheckItem
from runbook.model import Runbook
from runbook.outcomes import CollectionError
from runbook.outcomes import UsageError
from runbook.params import REQUIRED_TYPES
from runbook.params import coerce
from runbook.params import is_required
from runbook.safety.commandscan import PLACEHOLDER
from runbook.safety.commandscan import CommandScanner
from runbook.safety.guard import make_policy
from runbook.steps import Step

if TYPE_CHECKING:
    from runbook.collect import Collection
    from runbook.config import Config
    from runbook.hosts.host import CommandPolicy

#: The rules, by id, and what each one asks of a runbook.
RULES = {
    "imports": "the file imports and is a well-formed runbook (no syntax error, no exception)",
    "docstring": "a module docstring whose first line is the title",
    "hypothesis-unique": "each hypothesis id is declared once",
    "hypothesis-tested": "every hypothesis is tested by at least one check",
    "needs": "a check with needs=H comes after a check that tests H",
    "action-mitigates": "every action mitigates at least one hypothesis",
    "fixtures": "every fixture a check or action asks for exists, with a fitting scope",
    "params": "every PARAMS default has a type --param can set, and its text coerces back",
    "placeholder-param": "no PARAMS default is a made-up stand-in (app, example.com, <host>) "
    "for a value the operator must supply: declare its type instead (str, int)",
    "read-only": "no check passes host.run a command, visible in the source, that the "
    "read-only guard refuses",
}

SCHEMA = "runbook.lint/1"

_PARAM_TYPES = (str, bool, int, float, list, tuple)
_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Values that stand in for the operator's own (a process, a service, a host, a URL).
_PLACEHOLDER_WORDS = frozenset(
    {"app", "myapp", "my-app", "my_app", "myservice", "my-service", "service", "example",
     "changeme", "change-me", "todo", "tbd", "xxx", "foo", "bar", "placeholder"}
)  # fmt: skip
# RFC 2606 / 6761 names that never belong to anyone's service.
_PLACEHOLDER_HOST = re.compile(
    r"(^|[/@.])(example\.(com|net|org)|[a-z0-9-]+\.(example|invalid|test))(?=$|[:/])", re.I
)
_ANGLE_PLACEHOLDER = re.compile(r"<[^<>]+>")


@dataclasses.dataclass(frozen=True, slots=True)
class Finding:
    """One problem found in a runbook, with where it is."""

    path: str
    lineno: int | None
    rule: str
    message: str
    runbook: str = ""

    @property
    def location(self) -> str:
        """``file:line`` (or just the file), relative to the working directory if inside it."""
        path = _display(self.path)
        return f"{path}:{self.lineno}" if self.lineno else path

    def to_dict(self) -> dict[str, Any]:
        """Return the finding as JSON data."""
        return {
            "path": _display(self.path),
            "line": self.lineno,
            "runbook": self.runbook,
            "rule": self.rule,
            "message": self.message,
        }


def _display(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return path


def from_collection_error(error: CollectionError, runbook: str = "") -> Finding:
    """Report a runbook that failed to load as a finding of the rule it breaks."""
    lineno = error.lineno
    if lineno is None and error.rule == "hypothesis-unique":
        lines = _Source.parse(error.path).hypothesis_lines
        duplicated = [found[1] for found in lines.values() if len(found) > 1]
        lineno = min(duplicated) if duplicated else None
    return Finding(error.path, lineno, error.rule, error.message, runbook)


def lint_collection(
    config: Config, collection: Collection, names: Sequence[str] = ()
) -> tuple[list[str], list[Finding]]:
    """Lint the named runbooks (default: all, and every file that failed to load).

    Return the names linted and the findings, sorted by file and line. A name
    that is neither a runbook nor a broken runbook file is a ``UsageError``.
    """
    broken = broken_runbook_names(collection)
    findings: list[Finding] = []
    runbooks: list[Runbook] = []
    linted: list[str] = []
    if names:
        for name in dict.fromkeys(names):
            if name not in collection.runbooks and name in broken:
                findings.append(from_collection_error(broken[name], name))
            else:
                runbooks.append(collection.lookup(name))
            linted.append(name)
    else:
        runbooks = sorted(collection.runbooks.values(), key=lambda rb: rb.name)
        by_path = {error.path: name for name, error in broken.items()}
        findings = [from_collection_error(e, by_path.get(e.path, "")) for e in collection.errors]
        linted = sorted({*(rb.name for rb in runbooks), *by_path.values()})
    policy = make_policy(config, "read-only")
    for runbook in runbooks:
        findings += lint_runbook(runbook, collection.plugin_fixtures, policy)
    findings.sort(key=lambda f: (f.path, f.lineno or 0))
    return linted, findings


def lint_runbook(
    runbook: Runbook, plugin_fixtures: Sequence[FixtureDef], policy: CommandPolicy
) -> list[Finding]:
    """Return every problem found in ``runbook``, without running any of it.

    ``policy`` judges the commands checks visibly run: the run's own
    (``make_policy``), so that lint and the run agree, plugins included.
    """
    source = _Source.parse(str(runbook.path))
    found = [
        *_docstring(runbook),
        *_hypotheses(runbook, source),
        *_actions(runbook),
        *_fixtures(runbook, plugin_fixtures),
        *_params(runbook, source),
        *_placeholders(runbook, source),
        *_read_only(runbook, policy),
    ]
    found.sort(key=lambda f: f.lineno or 0)
    return [dataclasses.replace(f, runbook=runbook.name) for f in found]


@dataclasses.dataclass(frozen=True, slots=True)
class _Source:
    """Where things are declared in a runbook's file (empty if it cannot be read)."""

    hypothesis_lines: dict[str, list[int]]
    param_lines: dict[str, int]

    @classmethod
    def parse(cls, path: str) -> _Source:
        try:
            tree = ast.parse(Path(path).read_text(encoding="utf-8"), path)
        except (OSError, SyntaxError, ValueError):
            return cls({}, {})
        hypotheses: dict[str, list[int]] = {}
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and _called_name(node.func) == "hypothesis"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                hypotheses.setdefault(node.args[0].value, []).append(node.lineno)
        params: dict[str, int] = {}
        for statement in tree.body:
            if (
                isinstance(statement, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "PARAMS" for t in statement.targets)
                and isinstance(statement.value, ast.Dict)
            ):
                for key in statement.value.keys:
                    if isinstance(key, ast.Constant) and isinstance(key.value, str):
                        params[key.value] = key.lineno
        return cls(hypotheses, params)


def _called_name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def _docstring(runbook: Runbook) -> Iterable[Finding]:
    if not runbook.title:
        yield Finding(str(runbook.path), 1, "docstring", "module docstring with a title missing")


def _hypotheses(runbook: Runbook, source: _Source) -> Iterable[Finding]:
    path = str(runbook.path)
    for id, lines in source.hypothesis_lines.items():
        for lineno in lines[1:]:
            yield Finding(
                path,
                lineno,
                "hypothesis-unique",
                f"hypothesis id {id!r} is declared again (first on line {lines[0]})",
            )
    tested = {h.id for item in runbook.checks for h in item.tests}
    for hypothesis in runbook.hypotheses:
        if hypothesis.id not in tested:
            declared = source.hypothesis_lines.get(hypothesis.id)
            first = declared[0] if declared else None
            yield Finding(
                path,
                first,
                "hypothesis-tested",
                f"hypothesis {hypothesis.id!r} is not tested by any check",
            )
    tested_so_far: set[str] = set()
    for item in runbook.checks:
        needs = item.spec.needs
        if needs is not None and needs.id in tested and needs.id not in tested_so_far:
            yield Finding(
                path,
                item.lineno,
                "needs",
                f"{item.id} needs {needs.id!r}, but no check before it tests {needs.id!r} "
                "(checks run in definition order): it would always be skipped",
            )
        tested_so_far.update(h.id for h in item.tests)


def _actions(runbook: Runbook) -> Iterable[Finding]:
    for action in runbook.actions:
        if not action.spec.mitigates:
            yield Finding(
                str(runbook.path),
                action.lineno,
                "action-mitigates",
                f"action {action.id!r} mitigates no hypothesis",
            )


def _fixtures(runbook: Runbook, plugin_fixtures: Sequence[FixtureDef]) -> Iterable[Finding]:
    manager = FixtureManager((*runbook.fixtures, *plugin_fixtures))
    items: tuple[CheckItem | ActionItem, ...] = (*runbook.checks, *runbook.actions)
    for item in items:
        try:
            manager.validate(item.argnames)
        except FixtureError as exc:
            yield Finding(str(runbook.path), item.lineno, "fixtures", f"{item.id}: {exc}")


def _params(runbook: Runbook, source: _Source) -> Iterable[Finding]:
    for key, default in runbook.params.items():
        lineno = source.param_lines.get(key)
        problem = _param_problem(key, default)
        if problem:
            yield Finding(str(runbook.path), lineno, "params", problem)


def _param_problem(key: str, default: Any) -> str | None:
    if not _PARAM_NAME.match(key):
        return f"parameter {key!r}: not a valid name (params.{key} could not reach it)"
    if is_required(default):
        if default not in REQUIRED_TYPES:
            return (
                f"parameter {key}: {default.__name__} is not a type --param can set "
                "(str, int, float, bool or list)"
            )
        return None
    if not isinstance(default, _PARAM_TYPES):
        return (
            f"parameter {key}: default {default!r} is a {type(default).__name__}; --param sets "
            "only str, int, float, bool or a list of str"
        )
    if isinstance(default, list | tuple):
        if not all(isinstance(item, str) for item in default):
            return f"parameter {key}: default {default!r} must be a list of str"
        text = ",".join(default)
    else:
        text = str(default)
    try:
        coerce(key, text, default)
    except UsageError as exc:
        return str(exc)
    return None


def _placeholders(runbook: Runbook, source: _Source) -> Iterable[Finding]:
    for key, default in runbook.params.items():
        if isinstance(default, str) and _is_placeholder(default):
            yield Finding(
                str(runbook.path),
                source.param_lines.get(key),
                "placeholder-param",
                f"parameter {key}: default {default!r} stands in for a value the operator "
                f"must supply; declare it {{{key!r}: str}} so that checks needing it are "
                f"skipped until --param {key}=... is given",
            )


def _is_placeholder(value: str) -> bool:
    """True for a made-up stand-in: ``app``, ``example.com``, ``<host>``, ``svc.invalid``."""
    text = value.strip()
    return bool(
        text.lower() in _PLACEHOLDER_WORDS
        or _PLACEHOLDER_HOST.search(text)
        or _ANGLE_PLACEHOLDER.search(text)
    )


def _read_only(runbook: Runbook, policy: CommandPolicy) -> Iterable[Finding]:
    """Refuse, ahead of time, the commands checks visibly pass to ``host.run``."""
    scanner = CommandScanner()
    reported: set[tuple[str, int, str]] = set()
    for item in runbook.checks:
        step = Step(item.id, "check", "lint", True, tuple(item.spec.allow_commands))
        for command in scanner.commands(item.func):
            argv = None if command.argv is None else list(command.argv)
            violation = policy(command.command, argv, step)
            if violation is None:
                continue
            reason = violation.reason
            key = (command.path, command.lineno, reason)
            if PLACEHOLDER in reason or key in reported:
                continue  # it depends on a value known at run time, or was said already
            reported.add(key)
            via = "" if command.function == item.id else f" (via {command.function})"
            yield Finding(
                command.path,
                command.lineno,
                "read-only",
                f"{item.id}{via}: {command.shown!r}: {reason}",
            )
