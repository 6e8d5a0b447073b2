"""The authoring API: hypotheses, and the decorators that mark checks and actions.

Decorators mark, they do not wrap: ``@check`` and ``@action`` set one attribute
on the function and return it unchanged, so a runbook function stays a plain
function that a unit test can call directly.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any
from typing import TypeVar
from typing import overload

from runbook.evidence import render_evidence
from runbook.steps import Evidence
from runbook.steps import current_step

F = TypeVar("F", bound=Callable[..., Any])

CHECK_MARK = "runbook_check"
ACTION_MARK = "runbook_action"

_HYPOTHESIS_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


@dataclasses.dataclass(frozen=True, slots=True)
class Hypothesis:
    """A possible cause of the incident, which checks rule in or out."""

    id: str
    statement: str

    def __str__(self) -> str:
        return self.id


def hypothesis(id: str, statement: str) -> Hypothesis:
    """Declare a hypothesis: a short kebab-case ``id`` and the statement it stands for."""
    if not _HYPOTHESIS_ID.match(id):
        raise ValueError(f"hypothesis id {id!r} must be lowercase letters, digits, '-', '_' or '.'")
    return Hypothesis(id, statement)


@dataclasses.dataclass(frozen=True, slots=True)
class CheckSpec:
    """What ``@check`` records on a function."""

    tests: tuple[Hypothesis, ...]
    timeout: float | None
    needs: Hypothesis | None
    allow_commands: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class ActionSpec:
    """What ``@action`` records on a function."""

    mitigates: tuple[Hypothesis, ...]
    confirm: bool


HypothesesArg = Hypothesis | Iterable[Hypothesis] | None


def _hypotheses(value: HypothesesArg, argument: str) -> tuple[Hypothesis, ...]:
    if value is None:
        return ()
    items = (value,) if isinstance(value, Hypothesis) else tuple(value)
    for item in items:
        if not isinstance(item, Hypothesis):
            raise TypeError(f"{argument}= takes hypotheses made with hypothesis(), not {item!r}")
    return items


def _plain_text(value: object, argument: str) -> str:
    """Return ``value`` as an exact ``str`` (a subclass's methods could run unguarded later)."""
    if not isinstance(value, str):
        raise TypeError(f"{argument}= takes strings, not {value!r}")
    return str.__str__(value)


@overload
def check(func: F, /) -> F: ...


@overload
def check(
    *,
    tests: HypothesesArg = None,
    timeout: float | None = None,
    needs: Hypothesis | None = None,
    allow_commands: Iterable[str] = (),
) -> Callable[[F], F]: ...


def check(
    func: F | None = None,
    *,
    tests: HypothesesArg = None,
    timeout: float | None = None,
    needs: Hypothesis | None = None,
    allow_commands: Iterable[str] = (),
) -> Any:
    """Mark a read-only investigation that tests one or more hypotheses.

    A check with no ``tests`` is a symptom check. ``needs=H`` runs it only once
    ``H`` has been ruled in on the same host. ``allow_commands`` adds commands
    that the read-only policy would otherwise refuse, for this check only.
    """
    if timeout is not None:
        # A plain float: the runner later tests and compares it with no guard around.
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise TypeError(f"timeout= takes a number of seconds, not {timeout!r}")
        timeout = float(timeout)
        if not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds")
    allow_commands = tuple(_plain_text(entry, "allow_commands") for entry in allow_commands)
    if needs is not None and not isinstance(needs, Hypothesis):
        raise TypeError(f"needs= takes a hypothesis made with hypothesis(), not {needs!r}")
    spec = CheckSpec(_hypotheses(tests, "tests"), timeout, needs, allow_commands)

    def mark(function: F) -> F:
        setattr(function, CHECK_MARK, spec)
        return function

    return mark(func) if func is not None else mark


@overload
def action(func: F, /) -> F: ...


@overload
def action(*, mitigates: HypothesesArg = None, confirm: bool = True) -> Callable[[F], F]: ...


def action(func: F | None = None, *, mitigates: HypothesesArg = None, confirm: bool = True) -> Any:
    """Mark a change to the system that mitigates one or more hypotheses.

    Actions run only with ``--execute``, only when a hypothesis they mitigate
    was ruled in, and (unless ``confirm=False``) after the operator confirms.
    """
    spec = ActionSpec(_hypotheses(mitigates, "mitigates"), confirm)

    def mark(function: F) -> F:
        setattr(function, ACTION_MARK, spec)
        return function

    return mark(func) if func is not None else mark


def evidence(title: str, data: Any) -> None:
    """Attach evidence to the running check: a string, a list of records, or a CommandResult.

    Lists of dicts, dataclasses or objects are rendered as a table. Outside a
    running check (for example in a unit test) the evidence is discarded.
    """
    step = current_step.get()
    if step is not None:
        step.evidence.append(Evidence(str(title), render_evidence(data)))
