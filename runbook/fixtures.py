"""Fixtures: named factories injected into checks and actions by parameter name.

Scopes are ``run`` (once per run), ``host`` (once per target) and ``check``
(once per check or action). A generator fixture yields its value and runs the
rest as teardown when its scope ends. Fixtures may request other fixtures of
the same or a wider scope.
"""

from __future__ import annotations

import dataclasses
import inspect
import threading
from collections.abc import Callable
from collections.abc import Generator
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any
from typing import Literal
from typing import TypeVar
from typing import overload

F = TypeVar("F", bound=Callable[..., Any])

FIXTURE_MARK = "runbook_fixture"

ScopeName = Literal["run", "host", "check"]
SCOPES: tuple[ScopeName, ...] = ("run", "host", "check")
_WIDTH = {"run": 0, "host": 1, "check": 2}


@dataclasses.dataclass(frozen=True, slots=True)
class FixtureSpec:
    """What ``@fixture`` records on a function."""

    scope: ScopeName
    name: str | None


@overload
def fixture(func: F, /) -> F: ...


@overload
def fixture(*, scope: ScopeName = "check", name: str | None = None) -> Callable[[F], F]: ...


def fixture(func: F | None = None, *, scope: ScopeName = "check", name: str | None = None) -> Any:
    """Mark a fixture factory; checks receive its value by naming it as a parameter.

    ``scope`` is ``"run"``, ``"host"`` or ``"check"``. A generator fixture
    yields its value; the code after ``yield`` is its teardown.
    """
    if scope not in SCOPES:
        raise ValueError(f"fixture scope must be one of {', '.join(SCOPES)}, not {scope!r}")

    def mark(function: F) -> F:
        setattr(function, FIXTURE_MARK, FixtureSpec(scope, name))
        return function

    return mark(func) if func is not None else mark


@dataclasses.dataclass(frozen=True, slots=True)
class FixtureDef:
    """A fixture as the manager knows it."""

    name: str
    func: Callable[..., Any]
    scope: ScopeName
    argnames: tuple[str, ...]
    origin: str


def argnames(func: Callable[..., Any]) -> tuple[str, ...]:
    """Return the names of the parameters a check, action or fixture asks for."""
    return tuple(
        name
        for name, parameter in inspect.signature(func).parameters.items()
        if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
        and parameter.default is parameter.empty
    )


def fixtures_in(namespace: Mapping[str, Any], origin: str) -> Iterable[FixtureDef]:
    """Yield the fixtures defined in a module or plugin namespace."""
    for attribute, value in namespace.items():
        spec = getattr(value, FIXTURE_MARK, None)
        if isinstance(spec, FixtureSpec) and callable(value):
            yield FixtureDef(spec.name or attribute, value, spec.scope, argnames(value), origin)


class FixtureError(Exception):
    """A fixture is unknown, or requests a fixture of a narrower scope."""


#: Scopes of the built-in fixtures, whose values the runner provides.
BUILTIN_SCOPES: dict[str, ScopeName] = {
    "host": "host",
    "params": "run",
    "run_info": "run",
    "findings": "check",
}


class FixtureManager:
    """Resolve fixture names to values, caching per scope and running teardowns."""

    def __init__(self, definitions: Iterable[FixtureDef]) -> None:
        self.definitions: dict[str, FixtureDef] = {}
        for definition in definitions:
            # The first definition wins: callers list the closest ones first.
            self.definitions.setdefault(definition.name, definition)
        self._values: dict[tuple[ScopeName, str], dict[str, Any]] = {}
        self._teardowns: dict[
            tuple[ScopeName, str], list[tuple[str, Generator[Any, Any, Any]]]
        ] = {}
        self._lock = threading.RLock()
        #: True when some fixture asks for ``findings``, which is costly to compute.
        self.needs_findings = any(
            "findings" in definition.argnames for definition in self.definitions.values()
        )

    def validate(self, names: Iterable[str], scope: ScopeName = "check") -> None:
        """Raise ``FixtureError`` if a name (or a dependency) is unknown or mis-scoped."""
        for name in names:
            self._validate(name, scope, ())

    def _validate(self, name: str, requester_scope: ScopeName, chain: tuple[str, ...]) -> None:
        if name in chain:
            raise FixtureError(f"fixture {name!r} depends on itself: {' -> '.join(chain)}")
        builtin = BUILTIN_SCOPES.get(name)
        definition = self.definitions.get(name)
        if builtin is None and definition is None:
            known = sorted({*BUILTIN_SCOPES, *self.definitions})
            via = f" (requested by {chain[-1]!r})" if chain else ""
            raise FixtureError(f"unknown fixture {name!r}{via}; available: {', '.join(known)}")
        scope = builtin or definition.scope  # type: ignore[union-attr]
        if _WIDTH[scope] > _WIDTH[requester_scope]:
            raise FixtureError(
                f"{requester_scope}-scoped fixture {chain[-1]!r} cannot use "
                f"{scope}-scoped fixture {name!r}"
            )
        if definition is not None and builtin is None:
            for dependency in definition.argnames:
                self._validate(dependency, definition.scope, (*chain, name))

    def resolve(
        self,
        names: Iterable[str],
        keys: Mapping[ScopeName, str],
        builtins: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Return a value for each name; ``keys`` names the current run, host and check."""
        return {name: self._get(name, keys, builtins) for name in names}

    def _get(self, name: str, keys: Mapping[ScopeName, str], builtins: Mapping[str, Any]) -> Any:
        if name in builtins:
            return builtins[name]
        definition = self.definitions[name]
        slot = (definition.scope, keys[definition.scope])
        with self._lock:
            cache = self._values.setdefault(slot, {})
            if name in cache:
                return cache[name]
            kwargs = {arg: self._get(arg, keys, builtins) for arg in definition.argnames}
            value = definition.func(**kwargs)
            if inspect.isgenerator(value):
                generator = value
                value = next(generator)
                self._teardowns.setdefault(slot, []).append((name, generator))
            cache[name] = value
            return value

    def finish(self, scope: ScopeName, key: str) -> list[str]:
        """Tear down the fixtures of one scope instance; return error messages, if any."""
        slot = (scope, key)
        with self._lock:
            self._values.pop(slot, None)
            teardowns = self._teardowns.pop(slot, [])
        errors = []
        for name, generator in reversed(teardowns):
            try:
                next(generator)
            except StopIteration:
                continue
            except Exception as exc:
                errors.append(f"teardown of fixture {name!r} failed: {exc!r}")
            else:
                generator.close()
                errors.append(f"fixture {name!r} yielded more than once")
        return errors

    def finish_all(self) -> list[str]:
        """Tear down every fixture still alive, narrowest scope first."""
        errors: list[str] = []
        for slot in sorted(self._teardowns, key=lambda slot: -_WIDTH[slot[0]]):
            errors.extend(self.finish(*slot))
        return errors
