"""Runbook parameters: defaults from ``PARAMS``, overrides from ``--param KEY=VALUE``.

A default's type is the parameter's type. A default that *is* a type (``str``,
``int``, ``float``, ``bool``) declares a parameter the operator must supply, such
as a process name, a port or a URL: no made-up value stands in for it. A check
that reads one the operator did not supply is skipped, naming the parameter.
"""

from __future__ import annotations

import ast
import difflib
import functools
import inspect
import re
import textwrap
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from typing import Any

from runbook.outcomes import Skipped
from runbook.outcomes import UsageError

_TRUE = {"1", "true", "yes", "on", "y"}
_FALSE = {"0", "false", "no", "off", "n"}

SECRET_WORDS = ("password", "passwd", "token", "secret", "key", "credential", "dsn")


def is_secret_name(name: str) -> bool:
    """True for a parameter whose name suggests a secret (its value is redacted)."""
    lowered = name.lower()
    return any(word in lowered for word in SECRET_WORDS)


#: The types a must-supply parameter may declare (``PARAMS = {"port": int}``).
REQUIRED_TYPES = (str, int, float, bool, list)


def is_required(default: Any) -> bool:
    """True for a parameter the operator must supply: its default is a type, not a value."""
    return isinstance(default, type)


def param_type(default: Any) -> type:
    """Return the type of a parameter: its default's, or the type declared as its default."""
    return default if isinstance(default, type) else type(default)


def shown_default(default: Any) -> str:
    """Return a default as ``runbook show`` prints it: ``(required)`` for a must-supply one."""
    return "(required)" if is_required(default) else repr(default)


def needs_message(key: str) -> str:
    """Return the reason a check that reads the unsupplied parameter ``key`` is skipped."""
    return f"needs --param {key}={key.upper()}"


#: Finds ``needs_message`` texts in a longer message (an action's reason, in a report).
NEEDS_MESSAGE = re.compile(r"needs --param [^\s;=]+=[^\s;]+")


@functools.cache
def params_read(func: Callable[..., Any]) -> frozenset[str]:
    """The parameters ``func`` reads as ``params.NAME``, from its source (none without one)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError, SyntaxError):
        return frozenset()
    return frozenset(
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "params"
    )


def fill_in(text: str, params: Params) -> str:
    """``text`` with each ````name```` of a parameter replaced by its value in this run.

    Secret values stay masked; a must-supply parameter not given reads ``<name: not given>``.
    """
    shown = params.redacted()

    def value(match: re.Match[str]) -> str:
        key = match[1]
        if key not in shown:
            return match[0]
        return f"<{key}: not given>" if shown[key] is None else str(shown[key])

    return _QUOTED_NAME.sub(value, text)


_QUOTED_NAME = re.compile(r"``([A-Za-z_][A-Za-z0-9_]*)``")


def coerce(key: str, raw: str, default: Any) -> Any:
    """Convert ``raw`` to the type of ``default``; raise ``UsageError`` if it does not fit.

    ``default`` may be a type itself (a must-supply parameter).
    """
    if is_required(default):
        default = default()
    try:
        if isinstance(default, bool):
            lowered = raw.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError("expected true or false")
        if isinstance(default, int):
            return int(raw, 0)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, list | tuple):
            items = [item.strip() for item in raw.split(",") if item.strip()]
            return type(default)(items)
    except ValueError as exc:
        kind = type(default).__name__
        raise UsageError(f"parameter {key}={raw!r}: not a valid {kind} ({exc})") from None
    return raw


def parse_assignments(assignments: list[str]) -> dict[str, str]:
    """Split ``KEY=VALUE`` strings; raise ``UsageError`` for one without ``=``."""
    result: dict[str, str] = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--param {assignment!r}: expected KEY=VALUE")
        result[key.strip()] = value
    return result


def resolve_params(
    defaults: Mapping[str, Any], overrides: Mapping[str, str], secrets: Iterable[str] = ()
) -> Params:
    """Merge overrides into defaults, coercing each to the type of its default.

    A must-supply parameter without an override stays unset (see ``Params``).
    """
    values = {key: value for key, value in defaults.items() if not is_required(value)}
    for key, raw in overrides.items():
        if key not in defaults:
            known = ", ".join(sorted(defaults)) or "(this runbook takes no parameters)"
            close = difflib.get_close_matches(key, list(defaults), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UsageError(f"unknown parameter {key!r}.{hint} Known parameters: {known}")
        if is_required(defaults[key]) and not raw.strip():
            continue  # ``--param port=`` (an empty CI variable) supplies nothing
        values[key] = coerce(key, raw, defaults[key])
    unset = [key for key in defaults if key not in values]
    return Params(values, secrets, unset)


class Params(Mapping[str, Any]):
    """Read-only parameters with attribute access (``params.service``).

    ``unset`` names must-supply parameters the operator did not give: reading one as
    an attribute skips the running check (``needs --param port=PORT``); as a key it
    is missing, so ``params.get("port")`` is None and ``"port" in params`` is False.
    """

    __slots__ = ("_secrets", "_unset", "_values")
    _unset: tuple[str, ...]

    def __init__(
        self, values: Mapping[str, Any], secrets: Iterable[str] = (), unset: Iterable[str] = ()
    ) -> None:
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "_secrets", frozenset(secrets))
        object.__setattr__(self, "_unset", tuple(unset))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # copy and pickle probe dunders before _values exists
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            if name in self._unset:
                raise Skipped(needs_message(name)) from None
            known = sorted((*self._values, *self._unset))
            raise AttributeError(f"no parameter {name!r}; known: {', '.join(known)}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("parameters are read-only during a run")

    def __reduce__(
        self,
    ) -> tuple[type[Params], tuple[dict[str, Any], frozenset[str], tuple[str, ...]]]:
        return (Params, (self._values, self._secrets, self._unset))

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Params({self.redacted()!r})"

    def is_secret(self, name: str) -> bool:
        """True for a parameter declared secret or whose name looks secret."""
        return name in self._secrets or is_secret_name(name)

    @property
    def unset(self) -> tuple[str, ...]:
        """The must-supply parameters the operator did not give."""
        return self._unset

    def redacted(self) -> dict[str, Any]:
        """Return the values with secret ones replaced, for reports (None: not supplied)."""
        shown: dict[str, Any] = {
            key: "***" if self.is_secret(key) and value else value
            for key, value in self._values.items()
        }
        return {**shown, **dict.fromkeys(self._unset)}
