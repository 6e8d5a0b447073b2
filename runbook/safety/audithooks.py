"""The in-process read-only guard: Python audit hooks (PEP 578) around running checks.

While a check runs, its thread (and any thread it starts) may not write, delete
or rename files, change permissions, spawn processes outside ``host.run``,
signal processes, load native code with ctypes, leave code behind to run later
(trace functions, ``atexit``) or walk the interpreter to runbook's own objects
(``gc``, other frames). ``runbook.safety.inprocess_rules`` says what is refused.
The refusal raises ``ReadOnlyViolation`` inside the offending call, so nothing
changes, and the guard records it where the check cannot reach: the check ends
``blocked`` even if it catches the exception or clears lists it can see.

The guard's state (which threads it guards, their refusals, the framework's
own calls in progress, the originals of the functions it stands in for) lives
only in the audit hook's closure: Python offers no way to list or remove audit
hooks, so nothing refers to it but the interpreter. The functions below talk to
it through ``sys.audit`` and it checks who calls: only the frame that started a
guard can end it, and only runbook's own code can make a framework call.

This is a seatbelt, not a sandbox: see docs/safety.md for what stays out of its
reach (native code, ``frame.f_back``, objects the framework calls back later).
"""

from __future__ import annotations

import contextvars
import dataclasses
import os
import site
import sys
import sysconfig
import threading
import weakref
from collections.abc import Callable
from collections.abc import Iterable
from types import FrameType
from types import ModuleType
from types import TracebackType
from typing import TYPE_CHECKING
from typing import Any

from runbook.outcomes import ReadOnlyViolation
from runbook.safety import inprocess_rules
from runbook.safety import silent_calls

if TYPE_CHECKING:
    from runbook.steps import Step

_CONTROL = "runbook.guard"
_HINT = "checks only read; move the change into an @action, which runs with --execute"
_RUNBOOK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_GUARD_FILES = frozenset(
    {os.path.abspath(__file__), silent_calls.__file__ and os.path.abspath(silent_calls.__file__)}
)
_FRAME_ATTRIBUTES = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame"})
_lock = threading.Lock()
_installed = False


@dataclasses.dataclass(frozen=True, slots=True)
class Refusal:
    """One change the guard refused: what was tried, and the message the check saw."""

    operation: str
    reason: str
    message: str
    in_process: bool


def install() -> None:
    """Install the audit hook once per process (audit hooks cannot be removed).

    Called before runbooks are imported, so that a runbook cannot keep a
    reference to an original function (``from os import write``).
    """
    global _installed
    with _lock:
        if _installed:
            return
        import _posixsubprocess
        import _signal  # type: ignore[import-not-found]
        import _thread
        import atexit
        import platform
        import posix
        import subprocess

        modules = {
            "posix": posix,
            "os": os,
            "_signal": _signal,
            "signal": sys.modules.get("signal") or _signal,
            "_posixsubprocess": _posixsubprocess,
            "subprocess": subprocess,
            "atexit": atexit,
            "threading": threading,
            "readline": sys.modules.get("readline"),
        }
        originals: dict[str, Callable[..., Any]] = {
            "_thread.start_new_thread": _thread.start_new_thread
        }
        sys.addaudithook(_make_hook(originals, _Trust.from_interpreter()))
        silent_calls.replace_all({k: v for k, v in modules.items() if v}, originals)
        starter = _thread_starter()
        _thread.start_new_thread = starter
        threading._start_new_thread = starter  # type: ignore[attr-defined]
        threading.excepthook = _quiet_refusals(threading.excepthook)
        platform._Processor.from_subprocess = _processor_from_uname  # type: ignore[attr-defined]
        _installed = True


class guarding:
    """Refuse changes from the calling thread (and threads it starts) while ``step`` runs.

    Only the frame that entered the guard can leave it.
    """

    __slots__ = ("_step",)

    def __init__(self, step: Step) -> None:
        self._step = step

    def __enter__(self) -> None:
        install()
        _readline_check()
        sys.pycache_prefix = _PYCACHE_PREFIX  # a check may have moved it
        _control("enter", self._step)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _control("exit", self._step)


class framework_call:
    """Let runbook's own code (a backend running a vetted command) act inside a check.

    Only code of the runbook package that names ``framework_call`` may enter,
    and inside only frames of trusted code (runbook, the standard library,
    installed packages) act with the guard off: a user callback the framework
    happens to call (a ``__str__``, a trace function) is still guarded.
    """

    __slots__ = ()

    def __enter__(self) -> None:
        _control("privilege")

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _control("unprivilege")


def guarded_step() -> Step | None:
    """Return the check the calling thread works for (None outside any check)."""
    step: Step | None = _control("step")
    return step


def record_refusal(step: Step, violation: ReadOnlyViolation) -> None:
    """Record a refusal made outside the hook (a command the policy refused)."""
    _control("refuse", step, violation)


def take_refusals(step: Step) -> tuple[Refusal, ...]:
    """Return (and forget) what the guard refused to ``step``; refused inside a check."""
    refusals: tuple[Refusal, ...] = _control("take", step)
    return refusals


def trust_plugins(plugins: Iterable[object]) -> None:
    """Trust the code of these plugins (configured by the operator) in framework calls."""
    files = set()
    for plugin in plugins:
        module = (
            plugin if isinstance(plugin, ModuleType) else sys.modules.get(type(plugin).__module__)
        )
        filename = getattr(module, "__file__", None)
        if isinstance(filename, str):
            files.add(os.path.abspath(filename))
    _control("trust", frozenset(files))


def seal(owner: object, contents: object) -> None:
    """Keep ``contents`` for ``owner`` where only runbook's own code can reach it.

    A ``Host`` keeps its backend, policy and recorder here, not in attributes a
    check could read or replace. Refused inside a check: a host a check made
    itself would come with a policy of the check's choosing.
    """
    install()  # the hook is the only place that keeps it
    _control("seal", owner, contents)


def unseal(owner: object) -> Any:
    """Return what ``seal`` keeps for ``owner``: only for runbook code that names ``unseal``."""
    return _control("unseal", owner)


def _control(operation: str, *args: Any) -> Any:
    box: list[Any] = []
    sys.audit(_CONTROL, operation, args, box)
    return box[0] if box else None


@dataclasses.dataclass(frozen=True, slots=True)
class _Trust:
    """Where trusted code lives, and the import system's own code objects."""

    prefixes: tuple[str, ...]
    files: set[str]
    get_code: Any
    write_atomic: Any
    load: Any
    source_to_code: Any
    compile_bytecode: Any

    @classmethod
    def from_interpreter(cls) -> _Trust:
        external = sys.modules["_frozen_importlib_external"]
        bootstrap = sys.modules["_frozen_importlib"]
        paths = sysconfig.get_paths()
        folders = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
        folders.update(site.getsitepackages())
        plugins = sys.modules.get("runbook.plugins")
        folders.update(getattr(plugins, "__path__", ()))
        prefixes = tuple(os.path.join(os.path.abspath(f), "") for f in folders)
        return cls(
            (_RUNBOOK_DIR, *prefixes, "<frozen "),
            set(),
            external.SourceLoader.get_code.__code__,
            external._write_atomic.__code__,
            bootstrap._load_unlocked.__code__,
            external.SourceLoader.source_to_code.__code__,
            external._compile_bytecode.__code__,
        )

    def is_trusted(self, filename: str) -> bool:
        return filename.startswith(self.prefixes) or filename in self.files


class _Guarded:
    """One running check as the hook sees it.

    ``snapshot`` is a copy of the step taken as the guard starts: what it says
    (read-only, the commands it may run) cannot be changed by the check, while
    the lists it collects into are the step's own.
    """

    __slots__ = ("boundary", "snapshot", "step")

    def __init__(
        self, step: Step, boundary: FrameType | None, snapshot: Step | None = None
    ) -> None:
        self.step = step
        self.boundary = boundary
        self.snapshot = snapshot if snapshot is not None else dataclasses.replace(step)


def _make_hook(
    originals: dict[str, Callable[..., Any]], trust: _Trust
) -> Callable[[str, tuple[Any, ...]], None]:
    """Build the audit hook; its closure is the only home of the guard's state."""
    checks: dict[int, _Guarded] = {}  # thread id -> the check it runs or was started by
    privileged: dict[int, list[FrameType]] = {}  # thread id -> frames in framework calls
    refusals: dict[int, tuple[Step, list[Refusal]]] = {}  # id(step) -> its refusals
    tickets: dict[object, _Guarded] = {}  # threads started, not yet running
    sealed: dict[int, tuple[weakref.ref[Any], object]] = {}  # id(owner) -> owner, contents
    busy: set[int] = set()  # threads inside the hook's own work
    get_ident = threading.get_ident
    getframe = sys._getframe

    def forget_other_threads() -> None:
        """In a forked child only the forking thread lives on: drop the others' state.

        A new thread there may get the identity of one of them.
        """
        ident = get_ident()
        for table in (checks, privileged):
            for other in [key for key in table if key != ident]:
                del table[other]
        tickets.clear()
        busy.intersection_update({ident})

    os.register_at_fork(after_in_child=forget_other_threads)

    plumbing: set[Any] = set()

    def caller() -> FrameType | None:
        """The frame that called into the guard (past the hook and its helpers)."""
        frame: FrameType | None = getframe(1)
        while frame is not None and frame.f_code in plumbing:
            frame = frame.f_back
        return frame

    def keep(step: Step, refusal: Refusal) -> None:
        with _lock:
            refusals.setdefault(id(step), (step, []))[1].append(refusal)

    def refuse(guarded: _Guarded, event: str, reason: str) -> None:
        violation = ReadOnlyViolation(event, f"{reason} is not allowed in a read-only check", _HINT)
        keep(guarded.step, Refusal(event, reason, str(violation), in_process=True))
        raise violation

    def outside_check(frame: Any, guarded: _Guarded) -> bool:
        """True for the guard's own frames and frames at or below the check's boundary."""
        if not isinstance(frame, FrameType):
            return False
        if frame.f_code.co_filename in _GUARD_FILES:
            return True
        walker: FrameType | None = frame
        while walker is not None:
            if walker is guarded.boundary:
                return walker is frame
            walker = walker.f_back
        return guarded.boundary is not None

    def privileged_chain(ident: int) -> bool:
        """True when only trusted code lies between this event and a framework call."""
        roots = privileged.get(ident)
        if not roots:
            return False
        frame: FrameType | None = getframe(2)
        while frame is not None:
            if frame in roots:
                return True
            if not trust.is_trusted(frame.f_code.co_filename):
                return False
            frame = frame.f_back
        return False

    def frames_upward() -> list[FrameType]:
        found: list[FrameType] = []
        frame: FrameType | None = getframe(2)
        while frame is not None and len(found) < 24:
            found.append(frame)
            frame = frame.f_back
        return found

    def is_bytecode_cache(event: str, args: tuple[Any, ...]) -> bool:
        """True for the import system writing the .pyc of a module it imports."""
        if sys.pycache_prefix != _PYCACHE_PREFIX:
            return False
        frames = frames_upward()
        codes = [frame.f_code for frame in frames]
        if trust.get_code not in codes or trust.load not in codes:
            return False
        cached = frames[codes.index(trust.get_code)].f_locals.get("bytecode_path")
        if type(cached) is not str:
            return False
        if event == "open" and type(args[0]) is int:
            if trust.write_atomic not in codes:
                return False
            return frames[codes.index(trust.write_atomic)].f_locals.get("path") == cached
        paths = [inprocess_rules.plain_path(arg) for arg in args[:2] if arg is not None]
        if event == "os.mkdir":
            return bool(paths[0]) and cached.startswith(os.path.join(paths[0] or "", ""))
        temporary = f"{cached}."
        if event == "open":
            return bool(paths[0]) and (paths[0] or "").startswith(temporary)
        if event == "os.rename":
            return len(paths) == 2 and (paths[0] or "").startswith(temporary) and paths[1] == cached
        return False

    def from_import_system(*codes: Any) -> bool:
        # The guard's judge, screen and hook frames come first, then the import system's.
        return any(frame.f_code in codes for frame in frames_upward()[:7])

    def in_trusted_import() -> bool:
        """True when only trusted code runs between the event and a trusted module's top level.

        A library may adjust its own code as it is first imported (``types.coroutine``
        in asyncio's modules); a check's own frame on the way means it is the check's doing.
        """
        frame = caller()
        for _ in range(12):
            if frame is None or not trust.is_trusted(frame.f_code.co_filename):
                return False
            if frame.f_code.co_name == "<module>":
                return True
            frame = frame.f_back
        return False

    def judge(event: str, args: tuple[Any, ...], guarded: _Guarded) -> str | None:
        if event == "sys._getframe":
            return "reading runbook's own frames" if outside_check(args[0], guarded) else None
        if event == "object.__getattr__":
            if args[1] not in _FRAME_ATTRIBUTES:
                return None
            frame = getattr(args[0], args[1], None)
            return "reading runbook's own frames" if outside_check(frame, guarded) else None
        if event == "compile" or event == "code.__new__":
            filename = args[1] if len(args) > 1 else None
            if type(filename) is str and trust.is_trusted(filename):
                if not from_import_system(trust.source_to_code) and not in_trusted_import():
                    return f"making code that claims to come from {filename}"
            return None
        if event == "marshal.loads":
            return None if from_import_system(trust.compile_bytecode) else "loading marshalled code"
        if event == "import":
            name = args[0] if args else None
            if name in _STAND_IN_MODULES:
                return f"importing {name} afresh (its functions are guarded)"
            return None
        reason = inprocess_rules.describe(event, args)
        if reason is None:
            return None
        if event in inprocess_rules.IMPORT_TIME_REGISTRATIONS:
            frame = caller()
            if frame is not None and frame.f_code.co_name == "<module>":
                if trust.is_trusted(frame.f_code.co_filename):
                    return None  # a library registering its own clean-up as it is imported
        if event in _BYTECODE_EVENTS and is_bytecode_cache(event, args):
            return None
        return reason

    def control(operation: str, args: tuple[Any, ...], box: list[Any]) -> None:
        ident = get_ident()
        guarded = checks.get(ident)
        if operation == "step":
            # A copy: what the check may do is the guard's to keep, not the caller's to set.
            box.append(dataclasses.replace(guarded.snapshot) if guarded is not None else None)
        elif operation == "enter":
            frame = caller()
            if guarded is not None or not _is_runbook_code(frame, "guarding"):
                raise ReadOnlyViolation("guard", "only runbook starts a check's guard", _HINT)
            with _lock:
                checks[ident] = _Guarded(args[0], frame)
        elif operation == "exit":
            if guarded is None or caller() is not guarded.boundary:
                raise ReadOnlyViolation("guard", "only runbook ends a check's guard", _HINT)
            with _lock:
                checks.pop(ident, None)
        elif operation == "privilege":
            frame = caller()
            if frame is None or not _is_runbook_code(frame, "framework_call"):
                raise ReadOnlyViolation("framework_call", "only runbook's own code may", _HINT)
            privileged.setdefault(ident, []).append(frame)
        elif operation == "unprivilege":
            frames = privileged.get(ident)
            if not frames or caller() is not frames[-1]:
                raise ReadOnlyViolation("framework_call", "only its caller may end it", _HINT)
            frames.pop()
        elif operation == "refuse":
            step, violation = args
            step = guarded.step if guarded is not None else step
            keep(step, Refusal(violation.operation, violation.reason, str(violation), False))
        elif operation == "take":
            if guarded is not None:
                raise ReadOnlyViolation("refusals", "a check cannot take its refusals", _HINT)
            with _lock:
                box.append(tuple(refusals.pop(id(args[0]), (None, []))[1]))
        elif operation == "seal":
            keep_sealed(guarded, *args)
        elif operation == "unseal":
            if not _is_runbook_code(caller(), "unseal"):
                raise ReadOnlyViolation("unseal", "only runbook's own code may", _HINT)
            entry = sealed.get(id(args[0]))
            if entry is None or entry[0]() is not args[0]:
                raise ReadOnlyViolation("unseal", "nothing is sealed for this object", _HINT)
            box.append(entry[1])
        elif operation == "spawn":
            ticket = object()
            if guarded is not None:
                with _lock:
                    tickets[ticket] = guarded
            box.append(ticket)
        elif operation == "adopt":
            with _lock:
                parent = tickets.pop(args[0], None)
                if parent is not None:
                    checks[ident] = _Guarded(parent.step, None, parent.snapshot)
        elif operation == "trust":
            if guarded is not None:
                raise ReadOnlyViolation("trust", "a check cannot trust code", _HINT)
            trust.files.update(args[0])
        elif operation == "stand_in":
            silent_calls.replace_all(args[0], originals)
        elif operation == "orphan":
            with _lock:
                if guarded is not None and guarded.boundary is None:
                    checks.pop(ident, None)

    def keep_sealed(guarded: _Guarded | None, owner: object, contents: object) -> None:
        if guarded is not None:
            raise ReadOnlyViolation("seal", "a check cannot make a host of its own", _HINT)
        if not _is_runbook_code(caller(), "seal"):
            raise ReadOnlyViolation("seal", "only runbook's own code may", _HINT)
        with _lock:
            for key in [key for key, (ref, _) in sealed.items() if ref() is None]:
                del sealed[key]  # owners gone: their ids may come back
            if id(owner) in sealed:
                raise ReadOnlyViolation("seal", "it is sealed already", _HINT)
            sealed[id(owner)] = (weakref.ref(owner), contents)

    def screen(event: str, args: tuple[Any, ...]) -> None:
        """Refuse ``event`` if the check this thread runs for may not do it."""
        if not checks:  # fast path: no check is running
            return
        ident = get_ident()
        guarded = checks.get(ident)
        if guarded is None or ident in busy:
            return
        busy.add(ident)
        try:
            reason = judge(event, args, guarded)
            if reason is not None and not privileged_chain(ident):
                refuse(guarded, event, reason)
        finally:
            busy.discard(ident)

    def call(event: str, args: tuple[Any, ...], kwargs: dict[str, Any], box: list[Any]) -> None:
        screen(event, args)
        box.append(originals[event](*args, **kwargs))

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == silent_calls.CALL_EVENT:
            call(*args)
            return
        if event == _CONTROL:
            ident = get_ident()
            nested = ident in busy
            busy.add(ident)  # the guard's own frame reads are not the check's
            try:
                control(*args)
            finally:
                if not nested:
                    busy.discard(ident)
            return
        screen(event, args)

    plumbing.update(f.__code__ for f in (caller, judge, control, keep_sealed, screen, call, hook))
    plumbing.update(_PLUMBING)
    return hook


_BYTECODE_EVENTS = frozenset({"open", "os.mkdir", "os.rename"})
#: Native modules whose functions the guard stands in for: a fresh copy has the originals.
_STAND_IN_MODULES = frozenset(
    {"posix", "_posixsubprocess", "_signal", "_thread", "atexit", "readline"}
)
#: The bytecode cache folder this process started with (``-X pycache_prefix``).
_PYCACHE_PREFIX = sys.pycache_prefix


#: The guard's own entry points, skipped when the hook looks for who called it.
_PLUMBING = frozenset(
    function.__code__
    for function in (
        _control,
        guarding.__enter__,
        guarding.__exit__,
        framework_call.__enter__,
        framework_call.__exit__,
        guarded_step,
        seal,
        unseal,
        record_refusal,
        take_refusals,
        trust_plugins,
        silent_calls.stand_in("", "", "", print),
    )
)


def _is_runbook_code(frame: FrameType | None, name: str) -> bool:
    """True when ``frame`` runs code of the runbook package that names ``name``."""
    if frame is None:
        return False
    code = frame.f_code
    return code.co_filename.startswith(_RUNBOOK_DIR) and (
        name in code.co_names or name in code.co_varnames or name in code.co_freevars
    )


def _thread_starter() -> Callable[..., int]:
    """Return ``_thread.start_new_thread`` for threads that inherit their starter's guard.

    Python 3.11 raises no audit event when a thread starts, and contextvars do
    not follow threads or thread pools, so both are handed over here.
    """

    def start_new_thread(function: Callable[..., Any], args: Any, kwargs: Any = None) -> int:
        ticket = _control("spawn")
        context = contextvars.copy_context()
        extra = {} if kwargs is None else kwargs

        def bootstrap() -> None:
            _control("adopt", ticket)
            try:
                context.run(function, *args, **extra)
            finally:
                _control("orphan")

        box: list[Any] = []
        sys.audit(silent_calls.CALL_EVENT, "_thread.start_new_thread", (bootstrap, ()), {}, box)
        started: int = box[0]
        return started

    start_new_thread.__module__ = "_thread"
    return start_new_thread


def _readline_check() -> None:
    """Stand in for readline's file writers once something imported it."""
    module = sys.modules.get("readline")
    if module is not None and not hasattr(module.write_history_file, "__code__"):
        _control("stand_in", {"readline": module})


def _processor_from_uname() -> str:
    """``platform.processor()`` on Linux: ``uname -p``, run by runbook with a fixed PATH."""
    import subprocess

    with framework_call():
        try:
            output = subprocess.run(
                ["uname", "-p"],
                capture_output=True,
                text=True,
                env={"PATH": os.defpath, "LC_ALL": "C"},
                timeout=10,
                check=False,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return ""
    return output.strip()


def _quiet_refusals(
    previous: Callable[[threading.ExceptHookArgs], Any],
) -> Callable[[threading.ExceptHookArgs], Any]:
    """Keep refusals in threads a check started off stderr: the check records them."""

    def excepthook(args: threading.ExceptHookArgs) -> Any:
        if args.exc_type is not None and issubclass(args.exc_type, ReadOnlyViolation):
            return None
        return previous(args)

    return excepthook
