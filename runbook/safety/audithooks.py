"""The in-process read-only guard: Python audit hooks (PEP 578) around running checks.

While a check runs, its thread (and any thread it starts) may not write, delete
or rename files, change permissions, spawn processes outside ``host.run``,
signal other processes or load native code with ctypes. The refusal raises
``ReadOnlyViolation`` inside the offending call, so nothing changes, and it is
recorded on the check, which ends ``blocked`` even if the check catches it.

This is a seatbelt, not a sandbox: see docs/safety.md for what it does not
cover (writes through descriptors opened before the check, code that
deliberately calls into runbook's internals, C extensions that do not raise
audit events).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import stat
import sys
import threading
import weakref
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from runbook.outcomes import ReadOnlyViolation
from runbook.steps import Step

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_HARMLESS_PATHS = frozenset({"/dev/null", "/dev/stdout", "/dev/stderr"})

#: Events refused outright while a check runs, with the reason shown to the operator.
REFUSED_EVENTS = {
    "os.remove": "deleting a file",
    "os.rmdir": "removing a directory",
    "shutil.rmtree": "removing a directory tree",
    "os.rename": "renaming a file",
    "shutil.move": "moving a file",
    "shutil.copyfile": "copying a file",
    "shutil.copytree": "copying a directory tree",
    "os.mkdir": "creating a directory",
    "os.link": "creating a link",
    "os.symlink": "creating a symlink",
    "os.truncate": "truncating a file",
    "os.chmod": "changing permissions",
    "os.chown": "changing ownership",
    "os.chflags": "changing file flags",
    "os.utime": "changing file times",
    "os.setxattr": "changing extended attributes",
    "os.removexattr": "removing extended attributes",
    "os.putenv": "changing the environment",
    "os.unsetenv": "changing the environment",
    "subprocess.Popen": "starting a process outside host.run",
    "os.system": "starting a shell outside host.run",
    "os.exec": "replacing the process",
    "os.posix_spawn": "starting a process outside host.run",
    "os.spawn": "starting a process outside host.run",
    "os.fork": "forking the process",
    "os.forkpty": "forking the process",
    "os.killpg": "signalling a process group",
    "signal.pthread_kill": "signalling a thread",
    "ctypes.dlopen": "loading native code with ctypes",
    "ctypes.dlsym": "loading native code with ctypes",
    "ctypes.call_function": "calling native code with ctypes",
    "sqlite3.connect": "opening a database file",
    "sys.addaudithook": "installing another audit hook",
    "os.chdir": "changing the working directory",
    "resource.setrlimit": "changing resource limits",
    "resource.prlimit": "changing resource limits",
    # Raised by the wrappers below: CPython 3.11 has no audit event for these.
    "os.mkfifo": "creating a FIFO",
    "os.mknod": "creating a device node",
    "os.nice": "changing the process priority",
    "os.setpriority": "changing a process priority",
    "os.sched_setaffinity": "changing a process's CPU affinity",
    "os.setsid": "starting a new session",
    "os.setpgid": "changing a process group",
    "_posixsubprocess.fork_exec": "starting a process outside host.run",
}

#: Functions that change the system without raising an audit event of their own.
_SILENT_FUNCTIONS = (
    (os, "write"),
    (os, "writev"),
    (os, "pwrite"),
    (os, "sendfile"),
    (os, "mkfifo"),
    (os, "mknod"),
    (os, "nice"),
    (os, "setpriority"),
    (os, "sched_setaffinity"),
    (os, "setsid"),
    (os, "setpgid"),
)
_FD_WRITES = frozenset({"os.write", "os.writev", "os.pwrite", "os.sendfile"})

_lock = threading.Lock()
_checks: dict[int, Step] = {}  # thread id -> the check it runs
#: Threads a guarded thread started: they stay guarded for their whole life.
_children: weakref.WeakKeyDictionary[threading.Thread, Step] = weakref.WeakKeyDictionary()
_framework = threading.local()  # depth of runbook's own calls (host.run) per thread
_installed = False


def _framework_depth() -> int:
    depth: int = getattr(_framework, "depth", 0)
    return depth


def _describe(event: str, args: tuple[Any, ...]) -> str | None:
    """Return why ``event`` must be refused, or None to let it through."""
    if event in _FD_WRITES:
        return _describe_fd_write(args[0] if args else -1)
    if event == "open":
        path, mode, flags = (*args, None, None, None)[:3]
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS
        )
        if writes and str(path) not in _HARMLESS_PATHS:
            return f"opening {path} for writing"
        return None
    if event == "os.kill":
        pid, signal_number = args[0], args[1]
        return None if signal_number == 0 else f"sending signal {signal_number} to pid {pid}"
    reason = REFUSED_EVENTS.get(event)
    if reason is None:
        return None
    target = args[0] if args else None
    if isinstance(target, str | bytes | os.PathLike):
        return f"{reason} ({os.fsdecode(target)})"
    return reason


def _describe_fd_write(fd: Any) -> str | None:
    """Refuse writes through a descriptor opened before the check, unless it is a pipe or tty."""
    try:
        mode = os.fstat(fd).st_mode
    except (OSError, TypeError, ValueError):
        return None  # the call itself will fail
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode):
        return None
    return f"writing to descriptor {fd} (a file opened before the check)"


def _audited(event: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``function`` so that calling it raises the audit event ``event`` first."""

    @functools.wraps(function)
    def audited(*args: Any, **kwargs: Any) -> Any:
        sys.audit(event, *args[:1])
        return function(*args, **kwargs)

    return audited


def _audit_silent_functions() -> None:
    """Make state-changing calls that CPython 3.11 does not audit go through the hook."""
    for module, name in _SILENT_FUNCTIONS:
        if hasattr(module, name):
            setattr(module, name, _audited(f"os.{name}", getattr(module, name)))
    import _posixsubprocess  # the C function behind subprocess, callable directly
    import subprocess

    fork_exec = _audited("_posixsubprocess.fork_exec", _posixsubprocess.fork_exec)
    _posixsubprocess.fork_exec = fork_exec
    if getattr(subprocess, "_fork_exec", None) is not None:
        subprocess._fork_exec = fork_exec  # type: ignore[attr-defined]


def _guarded_step() -> Step | None:
    """Return the check the calling thread works for, if any."""
    step = _checks.get(threading.get_ident())
    if step is None and _children:
        step = _children.get(threading.current_thread())
    return step


def _start_guarded(start: Callable[[threading.Thread], None]) -> Callable[..., None]:
    """Wrap ``Thread.start`` so a thread started by a check inherits its guard.

    Python 3.11 raises no audit event when a thread starts, and contextvars do
    not follow threads or thread pools, so the inheritance happens here.
    """

    @functools.wraps(start)
    def guarded_start(self: threading.Thread) -> None:
        step = _guarded_step() if (_checks or _children) else None
        if step is not None:
            _children[self] = step
            # The check's context (its current step) goes along, so host.run in the
            # thread is classified and recorded like the check's own commands.
            context, run = contextvars.copy_context(), self.run
            self.run = lambda: context.run(run)  # type: ignore[method-assign]
        start(self)

    return guarded_start


def _caching_bytecode(args: tuple[Any, ...]) -> bool:
    """True when an import in a check writes the ``.pyc`` cache of the module it imports.

    The write must come from the import system's ``get_code`` and go to a
    bytecode cache path (a ``__pycache__`` folder, or ``sys.pycache_prefix``):
    a cache of this process's own code, which changes nothing on any target.
    Without this an ``import`` inside a check would end it ``blocked``.
    """
    callers = set()
    frame: FrameType | None = sys._getframe(2)
    while frame is not None:
        if "importlib" in frame.f_code.co_filename:
            callers.add(frame.f_code.co_name)
        frame = frame.f_back
    if "get_code" not in callers:
        return False
    if args and isinstance(args[0], int):  # the file _write_atomic just opened by its path
        return "_write_atomic" in callers
    paths = [os.fsdecode(arg) for arg in args[:2] if isinstance(arg, str | bytes | os.PathLike)]
    prefix = sys.pycache_prefix
    return bool(paths) and all(
        "__pycache__" in Path(path).parts or bool(prefix and path.startswith(prefix))
        for path in paths
    )


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if not _checks and not _children:  # fast path: no check is running
        return
    step = _guarded_step()
    if step is None or _framework_depth():
        return
    reason = _describe(event, args)
    if reason is None or _caching_bytecode(args):
        return
    violation = ReadOnlyViolation(
        f"{event}", f"{reason} is not allowed in a read-only check", _HINT
    )
    step.refusals.append(str(violation))
    raise violation


_HINT = "checks only read; move the change into an @action, which runs with --execute"


def install() -> None:
    """Install the audit hook once per process (audit hooks cannot be removed).

    Called before runbooks are imported, so that a runbook cannot keep a
    reference to an unwrapped function (``from os import write``).
    """
    global _installed
    with _lock:
        if not _installed:
            sys.addaudithook(_hook)
            threading.excepthook = _quiet_refusals(threading.excepthook)
            threading.Thread.start = _start_guarded(threading.Thread.start)  # type: ignore[method-assign]
            _audit_silent_functions()
            _installed = True


def _quiet_refusals(
    previous: Callable[[threading.ExceptHookArgs], Any],
) -> Callable[[threading.ExceptHookArgs], Any]:
    """Keep refusals in threads a check started off stderr: the check records them."""

    def excepthook(args: threading.ExceptHookArgs) -> Any:
        if args.exc_type is not None and issubclass(args.exc_type, ReadOnlyViolation):
            return None
        return previous(args)

    return excepthook


@contextlib.contextmanager
def guarding(step: Step) -> Iterator[None]:
    """Refuse changes from the calling thread (and threads it starts) while ``step`` runs."""
    install()
    ident = threading.get_ident()
    with _lock:
        _checks[ident] = step
    try:
        yield
    finally:
        with _lock:
            _checks.pop(ident, None)


@contextlib.contextmanager
def framework_call() -> Iterator[None]:
    """Let runbook's own code (a backend running a vetted command) act inside a check."""
    _framework.depth = _framework_depth() + 1
    try:
        yield
    finally:
        _framework.depth -= 1
