"""Runbooks as collected: a module turned into hypotheses, checks, actions and params."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from runbook.api import ACTION_MARK
from runbook.api import CHECK_MARK
from runbook.api import ActionSpec
from runbook.api import CheckSpec
from runbook.api import Hypothesis
from runbook.fixtures import FixtureDef
from runbook.fixtures import argnames
from runbook.fixtures import fixtures_in
from runbook.outcomes import CollectionError
from runbook.severity import SEVERITIES


@dataclasses.dataclass(frozen=True, slots=True)
class CheckItem:
    """A collected check."""

    id: str
    func: Callable[..., Any]
    spec: CheckSpec
    argnames: tuple[str, ...]
    lineno: int
    doc: str

    @property
    def tests(self) -> tuple[Hypothesis, ...]:
        """The hypotheses this check tests (empty for a symptom check)."""
        return self.spec.tests

    @property
    def is_symptom(self) -> bool:
        """True for a check that confirms or denies the reported symptom."""
        return not self.spec.tests


@dataclasses.dataclass(frozen=True, slots=True)
class ActionItem:
    """A collected action."""

    id: str
    func: Callable[..., Any]
    spec: ActionSpec
    argnames: tuple[str, ...]
    lineno: int
    doc: str


@dataclasses.dataclass(frozen=True, slots=True)
class Runbook:
    """A runbook: identity, hypotheses, checks, actions, parameters and fixtures."""

    name: str
    title: str
    description: str
    path: Path
    source: str
    hypotheses: tuple[Hypothesis, ...]
    checks: tuple[CheckItem, ...]
    actions: tuple[ActionItem, ...]
    params: dict[str, Any]
    tags: tuple[str, ...]
    severity: str | None
    fixtures: tuple[FixtureDef, ...]
    #: Parameter names declared secret with ``SECRETS`` (besides secret-looking names).
    secrets: tuple[str, ...] = ()

    @classmethod
    def from_module(
        cls, module: ModuleType, path: Path, source: str, shared: tuple[FixtureDef, ...] = ()
    ) -> Runbook:
        """Build a runbook from an imported module; raise ``CollectionError`` if malformed."""
        namespace = vars(module)
        doc = inspect.cleandoc(module.__doc__ or "")
        title, _, description = doc.partition("\n")
        checks = tuple(_items(namespace, CHECK_MARK, CheckItem))
        actions = tuple(_items(namespace, ACTION_MARK, ActionItem))
        return cls(
            name=runbook_name(path),
            title=title.strip().rstrip("."),
            description=description.strip(),
            path=path,
            source=source,
            hypotheses=_hypotheses(namespace, checks, actions, path),
            checks=checks,
            actions=actions,
            params=_params(namespace, path),
            tags=_tags(namespace, path),
            severity=_severity(namespace, path),
            fixtures=(*fixtures_in(namespace, str(path)), *shared),
            secrets=_secrets(namespace, path),
        )

    def hypothesis(self, id: str) -> Hypothesis:
        """Return the hypothesis with this id."""
        for item in self.hypotheses:
            if item.id == id:
                return item
        raise KeyError(id)


def runbook_name(path: Path) -> str:
    """Return a runbook's name: the file stem with ``_`` turned into ``-``."""
    return path.stem.replace("_", "-")


def defines_checks(module: ModuleType) -> bool:
    """True if a module holds at least one ``@check`` (and so is a runbook)."""
    return any(hasattr(value, CHECK_MARK) for value in vars(module).values())


def _items(namespace: dict[str, Any], mark: str, kind: Any) -> list[Any]:
    items = []
    for attribute, value in namespace.items():  # definition order, unlike dir()
        spec = getattr(value, mark, None)
        if spec is None or not callable(value):
            continue
        code = getattr(value, "__code__", None)
        items.append(
            kind(
                id=attribute,
                func=value,
                spec=spec,
                argnames=argnames(value),
                lineno=code.co_firstlineno if code else 0,
                doc=inspect.cleandoc(value.__doc__ or ""),
            )
        )
    return items


def _hypotheses(
    namespace: dict[str, Any],
    checks: tuple[CheckItem, ...],
    actions: tuple[ActionItem, ...],
    path: Path,
) -> tuple[Hypothesis, ...]:
    found: dict[str, Hypothesis] = {}
    declared = [value for value in namespace.values() if isinstance(value, Hypothesis)]
    used = [h for item in checks for h in (*item.spec.tests, item.spec.needs) if h]
    used += [h for item in actions for h in item.spec.mitigates]
    for item in (*declared, *used):
        known = found.setdefault(item.id, item)
        if known is not item and known != item:
            raise CollectionError(
                str(path), None, f"hypothesis id {item.id!r} is declared twice", "hypothesis-unique"
            )
    return tuple(found.values())


def _params(namespace: dict[str, Any], path: Path) -> dict[str, Any]:
    params = namespace.get("PARAMS", {})
    if not isinstance(params, dict) or not all(isinstance(key, str) for key in params):
        raise CollectionError(str(path), None, "PARAMS must be a dict with string keys", "params")
    return dict(params)


def _tags(namespace: dict[str, Any], path: Path) -> tuple[str, ...]:
    tags = namespace.get("TAGS", ())
    if isinstance(tags, str) or not all(isinstance(tag, str) for tag in tags):
        raise CollectionError(str(path), None, "TAGS must be a list of strings")
    return tuple(tags)


def _secrets(namespace: dict[str, Any], path: Path) -> tuple[str, ...]:
    secrets = namespace.get("SECRETS", ())
    if isinstance(secrets, str) or not all(isinstance(name, str) for name in secrets):
        raise CollectionError(str(path), None, "SECRETS must be a list of parameter names")
    unknown = sorted(set(secrets) - set(namespace.get("PARAMS", {})))
    if unknown:
        raise CollectionError(str(path), None, f"SECRETS names unknown parameters: {unknown}")
    return tuple(secrets)


def _severity(namespace: dict[str, Any], path: Path) -> str | None:
    severity = namespace.get("SEVERITY")
    if severity is not None and severity not in SEVERITIES:
        raise CollectionError(
            str(path), None, f"SEVERITY must be one of {', '.join(SEVERITIES)}, not {severity!r}"
        )
    return severity
