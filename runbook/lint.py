"""Static validation of runbooks, shared by ``runbook lint`` and ``run --dry-run``."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
from collections.abc import Iterable
from collections.abc import Sequence

from runbook.fixtures import FixtureDef
from runbook.fixtures import FixtureError
from runbook.fixtures import FixtureManager
from runbook.guard import Refused
from runbook.guard import check_command
from runbook.model import ActionItem
from runbook.model import CheckItem
from runbook.model import Runbook
from runbook.outcomes import CollectionError
from runbook.outcomes import UsageError
from runbook.params import coerce


@dataclasses.dataclass(frozen=True, slots=True)
class Finding:
    """One problem found in a runbook, with where it is."""

    path: str
    lineno: int | None
    rule: str
    message: str

    @property
    def location(self) -> str:
        """``file:line`` (or just the file)."""
        return f"{self.path}:{self.lineno}" if self.lineno else self.path


def from_collection_error(error: CollectionError) -> Finding:
    """Report a runbook that failed to load as a finding."""
    return Finding(error.path, error.lineno, "imports", error.message)


def lint_runbook(
    runbook: Runbook, plugin_fixtures: Sequence[FixtureDef] = (), allowed: Sequence[str] = ()
) -> list[Finding]:
    """Return every problem found in ``runbook``, without running any of it."""
    path = str(runbook.path)
    findings: list[Finding] = []
    if not runbook.title:
        findings.append(Finding(path, 1, "docstring", "module docstring with a title missing"))
    tested = {h.id for item in runbook.checks for h in item.tests}
    for hypothesis in runbook.hypotheses:
        if hypothesis.id not in tested:
            findings.append(
                Finding(
                    path,
                    None,
                    "hypothesis-tested",
                    f"hypothesis {hypothesis.id!r} is not tested by any check",
                )
            )
    for action in runbook.actions:
        if not action.spec.mitigates:
            findings.append(
                Finding(
                    path,
                    action.lineno,
                    "action-mitigates",
                    f"action {action.id!r} mitigates no hypothesis",
                )
            )
    manager = FixtureManager((*runbook.fixtures, *plugin_fixtures))
    items: tuple[CheckItem | ActionItem, ...] = (*runbook.checks, *runbook.actions)
    for item in items:
        try:
            manager.validate(item.argnames)
        except FixtureError as exc:
            findings.append(Finding(path, item.lineno, "fixtures", f"{item.id}: {exc}"))
    for key, default in runbook.params.items():
        try:
            coerce(key, str(default), default)
        except UsageError as exc:
            findings.append(Finding(path, None, "params", str(exc)))
    for item in runbook.checks:
        findings.extend(_static_commands(path, item.func, (*allowed, *item.spec.allow_commands)))
    return findings


def _static_commands(path: str, func: object, allowed: Sequence[str]) -> Iterable[Finding]:
    """Refuse, ahead of time, literal commands a check passes to ``host.run``."""
    try:
        source = textwrap.dedent(inspect.getsource(func))  # type: ignore[arg-type]
        first = inspect.getsourcelines(func)[1]  # type: ignore[arg-type]
    except (OSError, TypeError):
        return
    for node in ast.walk(ast.parse(source)):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "run"
            and node.args
        ):
            continue
        command = _literal_command(node.args[0])
        if command is None:
            continue
        text, argv = command
        try:
            check_command(text, argv, allowed)
        except Refused as exc:
            yield Finding(
                path,
                first + node.lineno - 1,
                "read-only",
                f"{getattr(func, '__name__', '?')}: {text!r}: {exc}",
            )


def _literal_command(node: ast.expr) -> tuple[str, list[str] | None] | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value, None
    if (
        isinstance(node, ast.List)
        and node.elts
        and all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts)
    ):
        argv = [e.value for e in node.elts]  # type: ignore[attr-defined]
        return " ".join(argv), argv
    return None
