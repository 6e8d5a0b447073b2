"""Calls that change the system without an audit event of their own in CPython 3.11.

Each is replaced, in every module that exports it (``os`` re-exports ``posix``,
``signal`` re-exports ``_signal``), by a stand-in that holds no reference to the
original: it passes its arguments to the guard's audit hook as the event
``runbook.call``, and the hook, which alone keeps the originals, judges the call
and makes it. There is no ``__wrapped__`` and no closure cell to recover the
original from.

Arguments are made plain (exact ``int``, ``str`` or ``bytes``) before the hook
sees them, so what is judged is exactly what the original receives, and no user
code (``__index__``, ``__fspath__``) ever runs inside the hook.
"""

from __future__ import annotations

import operator
import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

#: The audit event through which a stand-in asks the hook to make its call.
CALL_EVENT = "runbook.call"

#: (module names that export it, function name, event raised). ``readline`` is handled
#: only once something imports it: importing it has terminal side effects.
SILENT_FUNCTIONS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    *(
        (("posix", "os"), name, f"os.{name}")
        for name in (
            "write",
            "writev",
            "pwrite",
            "pwritev",
            "sendfile",
            "copy_file_range",
            "splice",
            "mkfifo",
            "mknod",
            "nice",
            "setpriority",
            "sched_setaffinity",
            "sched_setscheduler",
            "sched_setparam",
            "setsid",
            "setpgid",
            "setpgrp",
            "tcsetpgrp",
            "login_tty",
            "chroot",
            "setuid",
            "seteuid",
            "setreuid",
            "setresuid",
            "setgid",
            "setegid",
            "setregid",
            "setresgid",
            "setgroups",
            "initgroups",
            "dup2",
            "posix_fallocate",
            "register_at_fork",
        )
    ),
    *(
        (("_signal", "signal"), name, f"signal.{name}")
        for name in ("pidfd_send_signal", "raise_signal", "alarm", "setitimer")
    ),
    (("_posixsubprocess",), "fork_exec", "_posixsubprocess.fork_exec"),
    (("subprocess",), "_fork_exec", "_posixsubprocess.fork_exec"),
    (("atexit",), "register", "atexit.register"),
    (("threading",), "settrace", "threading.settrace"),
    (("threading",), "setprofile", "threading.setprofile"),
    (("threading",), "_register_atexit", "threading._register_atexit"),
    (("readline",), "write_history_file", "readline.write_history_file"),
    (("readline",), "append_history_file", "readline.append_history_file"),
)
#: Calls whose arguments are passed through untouched (callables, argument vectors).
_OPAQUE = frozenset(
    {
        "_posixsubprocess.fork_exec",
        "atexit.register",
        "threading.settrace",
        "threading.setprofile",
        "threading._register_atexit",
        "os.register_at_fork",
        "os.writev",
        "os.pwritev",
        "os.sched_setaffinity",
        "os.sched_setscheduler",
        "os.sched_setparam",
        "os.setgroups",
        "_thread.start_new_thread",
    }
)
_PLAIN_TYPES = frozenset({int, str, bytes, bool, float, type(None), bytearray, memoryview})


def plain(value: Any) -> Any:
    """Return ``value`` as an exact built-in type where it stands for a number or a path."""
    kind = type(value)
    if kind in _PLAIN_TYPES:
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bytes):
        return b"".join((value,))
    if isinstance(value, int):
        return int.__index__(value)
    if hasattr(kind, "__fspath__"):
        return plain(os.fspath(value))
    if hasattr(kind, "__index__"):
        return int.__index__(operator.index(value))
    return value


def stand_in(
    module: str, name: str, event: str, original: Callable[..., Any]
) -> Callable[..., Any]:
    """Return a function that makes ``original``'s call through the guard, holding no reference."""
    opaque = event in _OPAQUE
    audit = sys.audit

    def call(*args: Any, **kwargs: Any) -> Any:
        if not opaque:
            args = tuple(plain(arg) for arg in args)
        box: list[Any] = []
        audit(CALL_EVENT, event, args, kwargs, box)
        return box[0]

    call.__name__ = name
    call.__qualname__ = name
    call.__module__ = module
    call.__doc__ = getattr(original, "__doc__", None)
    return call


def replace_all(modules: dict[str, ModuleType], originals: dict[str, Callable[..., Any]]) -> None:
    """Put a stand-in in place of each silent function these modules export.

    ``originals`` receives each original by its event name: the caller keeps it
    where no check can reach it.
    """
    for names, name, event in SILENT_FUNCTIONS:
        for module_name in names:
            module = modules.get(module_name)
            current = getattr(module, name, None) if module is not None else None
            if current is None or getattr(current, "__code__", None) is _STAND_IN_CODE:
                continue
            originals.setdefault(event, current)
            setattr(module, name, stand_in(module_name, name, event, current))


_STAND_IN_CODE = stand_in("", "", "", print).__code__
