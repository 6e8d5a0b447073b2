"""What the in-process guard refuses: audit events, written paths and descriptors.

These rules look only at an event and its arguments. Decisions that need the
calling thread's stack (frames, the bytecode cache, the framework's own calls)
are made by :mod:`runbook.safety.audithooks`.

Arguments are judged by their exact type and never converted by calling user
code: a ``str`` subclass or a custom path-like object could answer differently
when the guard asks and when the operating system is called.
"""

from __future__ import annotations

import os
import pathlib
import stat
from typing import Any

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
    # Code that would run later, outside the check, with nothing to guard it.
    "sys.settrace": "installing a trace function",
    "sys.setprofile": "installing a profile function",
    # Ways to reach runbook's own objects (the run, its mode, the guard).
    "gc.get_objects": "walking the garbage collector's objects",
    "gc.get_referrers": "walking the garbage collector's references",
    "gc.get_referents": "walking the garbage collector's references",
    "sys._current_frames": "reading other threads' frames",
    "sys._current_exceptions": "reading other threads' frames",
    # Raised by runbook.safety.silent_calls: CPython 3.11 has no audit event for these.
    "os.mkfifo": "creating a FIFO",
    "os.mknod": "creating a device node",
    "os.nice": "changing the process priority",
    "os.setpriority": "changing a process priority",
    "os.sched_setaffinity": "changing a process's CPU affinity",
    "os.sched_setscheduler": "changing a process's scheduling policy",
    "os.sched_setparam": "changing a process's scheduling parameters",
    "os.setsid": "starting a new session",
    "os.setpgid": "changing a process group",
    "os.setpgrp": "changing a process group",
    "os.tcsetpgrp": "changing the terminal's process group",
    "os.login_tty": "changing the controlling terminal",
    "os.chroot": "changing the root directory",
    "os.setuid": "changing the process's user",
    "os.seteuid": "changing the process's user",
    "os.setreuid": "changing the process's user",
    "os.setresuid": "changing the process's user",
    "os.setgid": "changing the process's group",
    "os.setegid": "changing the process's group",
    "os.setregid": "changing the process's group",
    "os.setresgid": "changing the process's group",
    "os.setgroups": "changing the process's groups",
    "os.initgroups": "changing the process's groups",
    "os.dup2": "replacing an open descriptor",
    "os.posix_fallocate": "allocating file space",
    "os.register_at_fork": "registering code to run at fork",
    "_posixsubprocess.fork_exec": "starting a process outside host.run",
    "signal.pidfd_send_signal": "signalling a process",
    "signal.raise_signal": "signalling the runbook process",
    "signal.alarm": "scheduling a signal to the runbook process",
    "signal.setitimer": "scheduling a signal to the runbook process",
    "readline.write_history_file": "writing a history file",
    "readline.append_history_file": "writing a history file",
    "atexit.register": "registering code to run at exit",
    "threading.settrace": "installing a trace function for every new thread",
    "threading.setprofile": "installing a profile function for every new thread",
    "threading._register_atexit": "registering code to run at exit",
}

#: Calls that write through a descriptor, and which argument is the descriptor written.
FD_WRITES = {
    "os.write": 0,
    "os.writev": 0,
    "os.pwrite": 0,
    "os.pwritev": 0,
    "os.sendfile": 0,
    "os.copy_file_range": 1,
    "os.splice": 1,
}
#: Registrations that stdlib modules make when they are first imported (at module level).
IMPORT_TIME_REGISTRATIONS = frozenset(
    {"atexit.register", "threading._register_atexit", "os.register_at_fork"}
)

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
#: Paths that name one of this process's descriptors rather than a file.
_STREAMS = {"/dev/stdout": 1, "/dev/stderr": 2}
_DESCRIPTOR_FOLDERS = ("/dev/fd/", "/proc/self/fd/")
_PATH_TYPES = (pathlib.PosixPath, pathlib.PurePosixPath)
try:
    _NULL_DEVICE = os.stat(os.devnull).st_rdev
except OSError:  # no /dev/null (a minimal container): nothing matches it
    _NULL_DEVICE = -1


def describe(event: str, args: tuple[Any, ...]) -> str | None:
    """Return why ``event`` must be refused, or None to let it through."""
    if event in FD_WRITES:
        position = FD_WRITES[event]
        return describe_fd_write(args[position] if len(args) > position else None)
    if event == "open":
        return _describe_open(*(*args, None, None, None)[:3])
    if event == "os.kill":
        pid, signal_number = args[0], args[1]
        return None if signal_number == 0 else f"sending signal {signal_number} to pid {pid}"
    if event == "resource.prlimit":
        # prlimit(pid, resource) only reads; with new limits it changes them.
        if len(args) < 3 or args[2] is None:
            return None
        return f"changing resource limits of pid {args[0]}"
    if event == "mmap.__new__":
        return _describe_mmap(*args[:3])
    reason = REFUSED_EVENTS.get(event)
    if reason is None:
        return None
    target = plain_path(args[0]) if args else None
    return f"{reason} ({target})" if target else reason


def plain_path(value: Any) -> str | None:
    """Return ``value`` as a path string when its exact type says what it is, else None."""
    kind = type(value)
    if kind is str:
        return str(value)
    if kind is bytes:
        return os.fsdecode(value)
    if kind in _PATH_TYPES:
        return str(value)  # pathlib's own conversion, not an override
    return None


def is_stream_descriptor(fd: int) -> bool:
    """True when writing to ``fd`` reaches a pipe, a socket, a terminal or /dev/null."""
    try:
        status = os.fstat(fd)
    except (OSError, OverflowError):
        return False
    mode = status.st_mode
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        return True
    if stat.S_ISCHR(mode):
        return status.st_rdev == _NULL_DEVICE or os.isatty(fd)
    return False


def describe_fd_write(fd: Any) -> str | None:
    """Refuse writes through a descriptor unless it reaches a stream (see above)."""
    if type(fd) is not int:
        return f"writing to a descriptor given as {type(fd).__name__}"
    if is_stream_descriptor(fd):
        return None
    return f"writing to descriptor {fd} (a file opened before the check)"


def _describe_open(path: Any, mode: Any, flags: Any) -> str | None:
    writes = (type(mode) is str and any(c in mode for c in "wax+")) or (
        type(flags) is int and flags & _WRITE_FLAGS
    )
    if not writes:
        return None
    if type(path) is int:
        return None if is_stream_descriptor(path) else f"opening descriptor {path} for writing"
    text = plain_path(path)
    if text is None:
        return f"opening a path given as {type(path).__name__} for writing"
    if _is_harmless(text):
        return None
    return f"opening {text} for writing"


def _is_harmless(path: str) -> bool:
    """/dev/null, or a name of a descriptor that is itself a stream (/dev/stdout on a pipe)."""
    if path == os.devnull:
        return True
    fd = _STREAMS.get(path)
    if fd is None and path.startswith(_DESCRIPTOR_FOLDERS):
        number = path.rpartition("/")[2]
        fd = int(number) if number.isdigit() else None
    return fd is not None and is_stream_descriptor(fd)


def _describe_mmap(fileno: Any, length: Any, access: Any) -> str | None:
    import mmap

    if fileno == -1 or access == mmap.ACCESS_READ or access == mmap.ACCESS_COPY:
        return None
    if type(fileno) is int and is_stream_descriptor(fileno):
        return None
    return f"mapping descriptor {fileno} writable (use access=mmap.ACCESS_READ)"
