"""Find, without running anything, the commands a check passes to ``host.run``.

``runbook lint`` judges each one with the run's command policy. Only what the source
shows is judged: string literals, ``%s`` templates, lists, f-strings and
module-level string constants, in the check itself and in the functions of its
module that it calls (actions excepted). A value known only at run time becomes
a harmless placeholder word; a refusal that names the placeholder depends on
that value, so it is not reported.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import shlex
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Stands for a value the source does not show (a parameter, a variable).
PLACEHOLDER = "lint-placeholder-value"

_TEMPLATE = re.compile(r"%[s%]")
_Function = ast.FunctionDef | ast.AsyncFunctionDef


@dataclasses.dataclass(frozen=True, slots=True)
class StaticCommand:
    """A command whose text the source shows, and where it is passed to ``host.run``."""

    path: str
    lineno: int
    function: str
    command: str
    argv: tuple[str, ...] | None
    #: The command as the source shows it (``%s`` kept, ``...`` for unknown values).
    shown: str


@dataclasses.dataclass(frozen=True, slots=True)
class _Module:
    path: str
    tree: ast.Module
    functions: dict[str, _Function]
    constants: dict[str, str]

    @classmethod
    def parse(cls, path: str) -> _Module | None:
        try:
            tree = ast.parse(Path(path).read_text(encoding="utf-8"), path)
        except (OSError, SyntaxError, ValueError):
            return None  # the import rule reports files that do not parse
        functions: dict[str, _Function] = {}
        constants: dict[str, str] = {}
        for node in tree.body:
            if isinstance(node, _Function):
                functions[node.name] = node  # the last definition wins, as at run time
            elif (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                constants[node.targets[0].id] = node.value.value
        return cls(path, tree, functions, constants)


class CommandScanner:
    """Scan checks for the commands they run; each source file is parsed once."""

    def __init__(self) -> None:
        self._modules: dict[str, _Module | None] = {}

    def commands(self, func: Callable[..., Any]) -> list[StaticCommand]:
        """Return the commands ``func`` and the module functions it calls pass to host.run."""
        try:
            path = inspect.getsourcefile(func)
        except TypeError:
            return []
        if path is None:
            return []
        if path not in self._modules:
            self._modules[path] = _Module.parse(path)
        module = self._modules[path]
        if module is None:
            return []
        node = module.functions.get(getattr(func, "__name__", ""))
        if node is None:
            return []
        found: list[StaticCommand] = []
        seen = {node.name}
        pending = [node]
        while pending:
            function = pending.pop(0)
            for call in _calls(function):
                if _is_host_run(call):
                    command = _command(call, module.constants)
                    if command is not None:
                        text, argv, shown = command
                        found.append(
                            StaticCommand(path, call.lineno, function.name, text, argv, shown)
                        )
                elif isinstance(call.func, ast.Name) and call.func.id not in seen:
                    helper = module.functions.get(call.func.id)
                    if helper is not None and not _is_action(helper):
                        seen.add(helper.name)
                        pending.append(helper)
        return found


def _calls(function: _Function) -> Iterator[ast.Call]:
    for node in ast.walk(function):
        if isinstance(node, ast.Call):
            yield node


def _is_host_run(call: ast.Call) -> bool:
    """True for ``host.run(...)``, ``self.host.run(...)``, ``web_host.run(...)`` ..."""
    func = call.func
    if not (isinstance(func, ast.Attribute) and func.attr == "run" and call.args):
        return False
    receiver = func.value
    name = (
        receiver.id
        if isinstance(receiver, ast.Name)
        else receiver.attr
        if isinstance(receiver, ast.Attribute)
        else ""
    )
    return name.lower().endswith("host")


def _is_action(function: _Function) -> bool:
    for decorator in function.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if name == "action":
            return True
    return False


def _command(
    call: ast.Call, constants: dict[str, str]
) -> tuple[str, tuple[str, ...] | None, str] | None:
    """Return the command with placeholders, its argv for a list, and how the source shows it.

    None when the source does not show the command (or the program it runs).
    """
    first, rest = call.args[0], call.args[1:]
    if isinstance(first, ast.List | ast.Tuple):
        words = [_text(element, constants) for element in first.elts]
        if not words or words[0] is None:
            return None  # the program itself is only known at run time
        argv = tuple(PLACEHOLDER if word is None else word for word in words)
        shown = " ".join("..." if word is None else shlex.quote(word) for word in words)
        return shlex.join(argv), argv, shown
    text = _text(first, constants)
    if text is None:
        return None
    shown = text.replace(PLACEHOLDER, "{...}")
    if rest:  # host.run("tail -n 50 %s", path): each %s is a quoted argument
        values = iter([_text(arg, constants) for arg in rest])
        text = _TEMPLATE.sub(lambda m: "%" if m.group() == "%%" else _quoted(values), text)
    return text, None, shown


def _quoted(values: Iterator[str | None]) -> str:
    """The next argument as ``Host.run`` passes it (shell-quoted), or the placeholder."""
    value = next(values, None)
    return PLACEHOLDER if value is None else shlex.quote(value)


def _text(node: ast.expr, constants: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    if isinstance(node, ast.JoinedStr):  # f"... {value} ...": the value is unknown
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                parts.append(value.value)
            else:
                parts.append(PLACEHOLDER)
        return "".join(parts)
    return None
