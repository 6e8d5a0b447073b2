"""The ``Host`` that checks talk to, in front of swappable backends.

``Host`` is the one choke point for commands: it shell-quotes arguments, asks
the command policy whether a read-only step may run the command, records what
ran, and delegates the actual execution to a backend (local, SSH, ...).
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import time
from collections.abc import Callable
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import TypeVar
from typing import cast

from runbook.api import evidence
from runbook.hosts import filesystems
from runbook.hosts import sockets
from runbook.hosts import system
from runbook.hosts.backend import Backend
from runbook.hosts.backend import Connecting
from runbook.hosts.backend import Exchanging
from runbook.outcomes import CommandTimeout as CommandTimeout  # re-exported for backends
from runbook.outcomes import ReadOnlyViolation
from runbook.safety.audithooks import framework_call
from runbook.safety.audithooks import guarded_step
from runbook.safety.audithooks import record_refusal
from runbook.safety.audithooks import seal
from runbook.safety.audithooks import unseal
from runbook.steps import CommandRecord
from runbook.steps import Step
from runbook.steps import current_step

if TYPE_CHECKING:
    from runbook.records import Target

_T = TypeVar("_T")

#: Default per-command timeout in seconds, when neither the caller nor the check sets one.
DEFAULT_COMMAND_TIMEOUT = 60.0


@dataclasses.dataclass(frozen=True, slots=True)
class CommandResult:
    """What a command printed and how it exited."""

    command: str
    stdout: str
    stderr: str
    exit_status: int
    duration_s: float

    @property
    def succeeded(self) -> bool:
        """True when the command exited with status 0."""
        return self.exit_status == 0

    def check_output(self, where: str = "") -> str:
        """Return what the command printed; raise ``RuntimeError`` if it exited non-zero.

        ``where`` names the host for the message (see ``describe_failure``).
        """
        if not self.succeeded:
            raise RuntimeError(self.describe_failure(where))
        return self.stdout

    def describe_failure(self, where: str = "", detail: str = "") -> str:
        """Say which command failed ``where``, its exit status, last stderr line and ``detail``."""
        command = self.command if len(self.command) <= 120 else self.command[:117] + "..."
        message = f"{command!r} failed" + (f" on {where}" if where else "")
        message += f" (exit status {self.exit_status})"
        stderr = self.stderr.strip().splitlines()
        if stderr:
            message += f": {stderr[-1]}"
        return f"{message}; {detail}" if detail else message

    def __str__(self) -> str:
        return self.stdout


def host_name(target: Target, backend: Backend) -> str:
    """The name reports give a target: the inventory's or the address's, else the backend's.

    A plain spec (``echo://web1``) lets a plugin transport name its host itself.
    """
    return target.name if target.name != target.spec else backend.name


#: Decides whether a read-only step may run a command, given its display form, its
#: argv (for list commands; None for shell strings) and the running step. Returns
#: None to allow it, or the ReadOnlyViolation that refuses it.
CommandPolicy = Callable[[str, "list[str] | None", Step], "ReadOnlyViolation | None"]

_PLACEHOLDER = re.compile(r"%[s%]")


def interpolate(command: str, args: Sequence[object]) -> str:
    """Replace each ``%s`` in ``command`` with the next shell-quoted argument.

    ``%%`` stands for a literal ``%``. Without arguments the command is left as
    it is, so ``ps -o %cpu`` needs no escaping.
    """
    if not args:
        return command
    remaining = iter(args)
    used = 0

    def substitute(match: re.Match[str]) -> str:
        nonlocal used
        if match.group() == "%%":
            return "%"
        used += 1
        try:
            return shlex.quote(str(next(remaining)))
        except StopIteration:
            raise TypeError(
                f"not enough arguments for command {command!r}: it has more %s than arguments"
            ) from None

    result = _PLACEHOLDER.sub(substitute, command)
    if used != len(args):
        raise TypeError(
            f"command {command!r} has {used} %s placeholder(s) but got {len(args)} argument(s)"
        )
    return result


@dataclasses.dataclass(frozen=True, slots=True)
class _Collaborators:
    """What a ``Host`` works with, sealed away from the checks it is given to."""

    backend: Backend
    name: str
    uri: str
    policy: CommandPolicy | None
    on_record: Callable[[CommandRecord], CommandRecord] | None


def _plain(text: str) -> str:
    """``text`` as an exact ``str``: a subclass's methods are never called again."""
    return "".join([text])


def _detached(error: BaseException) -> BaseException:
    """``error`` without the frames and exceptions behind it, which held the sealed parts."""
    error.__traceback__ = None
    error.__context__ = None
    error.__cause__ = None
    return error


def _sealed(host: Host) -> _Collaborators:
    """The collaborators sealed for ``host``."""
    collaborators: _Collaborators = unseal(host)
    return collaborators


def _execute(host: Host, command: str | list[str], display: str, timeout: float) -> CommandResult:
    sealed = _sealed(host)
    step = current_step.get()
    started = time.time()
    guarded = guarded_step()  # a check cannot swap or relax the step its guard holds
    if guarded is not None:
        step = guarded
    if step is not None and step.read_only and sealed.policy is not None:
        argv = command if isinstance(command, list) else None
        with framework_call():  # the policy and its plugins are runbook's own code
            violation = sealed.policy(display, argv, step)
        if violation is not None:
            record = CommandRecord(
                sealed.name, step.id, display, None, 0.0, True, started, violation.reason
            )
            _record(sealed, step, record)
            record_refusal(step, violation)  # blocked even if the check catches it
            raise violation
    on_cancel = step.on_cancel if step is not None else None
    clock = time.perf_counter()
    exit_status: int | None = None
    try:
        with framework_call():  # the command was vetted above
            stdout, stderr, exit_status = sealed.backend.execute(command, timeout, on_cancel)
    finally:
        duration = time.perf_counter() - clock
        if step is not None:
            record = CommandRecord(
                sealed.name, step.id, display, exit_status, duration, False, started
            )
            _record(sealed, step, record)
    return CommandResult(display, stdout, stderr, exit_status, duration)


def _record(sealed: _Collaborators, step: Step, record: CommandRecord) -> None:
    """Keep a command on its step and tell the run (which redacts and audits it)."""
    if sealed.on_record is not None:
        with framework_call():
            record = sealed.on_record(record)
    step.commands.append(record)


class Host:
    """A target machine: run commands, read files, and use the system helpers.

    Its backend, command policy and recorder are sealed by the in-process guard
    (``runbook.safety.audithooks.seal``): no attribute holds them, so a check can
    neither call the backend past the policy nor put its own policy or recorder
    in their place, and a check cannot make a ``Host`` of its own.
    """

    __slots__ = ("__weakref__", "command_timeout")

    def __init__(
        self,
        backend: Backend,
        *,
        name: str | None = None,
        policy: CommandPolicy | None = None,
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
        on_record: Callable[[CommandRecord], CommandRecord] | None = None,
    ) -> None:
        name = name or backend.name
        seal(self, _Collaborators(backend, name, backend.uri, policy, on_record))
        self.command_timeout = command_timeout

    @property
    def name(self) -> str:
        """The host's name, as reports show it."""
        return _sealed(self).name

    @property
    def uri(self) -> str:
        """Where the host is reached (``local://web1``, ``ssh://ops@db1:22``)."""
        return _sealed(self).uri

    def __repr__(self) -> str:
        return f"<Host {self.name} {self.uri}>"

    def run(
        self, command: str | Sequence[object], *args: object, timeout: float | None = None
    ) -> CommandResult:
        """Run a command on the host and return its result (a non-zero exit does not raise).

        A string runs through ``sh -c``; each ``%s`` in it is replaced by the next
        argument, shell-quoted. A list runs without any shell.
        """
        if isinstance(command, str):
            shell_command: str | list[str] = _plain(interpolate(command, args))
            display = str(shell_command)
        else:
            if args:
                raise TypeError("pass the arguments inside the list, not after it")
            shell_command = [_plain(str(part)) for part in command]
            display = shlex.join(shell_command)
        # Plain values only past this point: no code of the caller's runs while the
        # sealed collaborators are in use.
        seconds = float(timeout or self.command_timeout)
        try:
            return _execute(self, shell_command, display, seconds)
        except BaseException as error:
            raise _detached(error) from None

    def exchange(self, kind: str, request: str, perform: Callable[[], _T]) -> _T:
        """Let a plugin client that reaches the target another way be recorded and replayed.

        ``perform`` does the exchange (say, runs the SQL ``request``) and returns
        plain data (dicts, lists, strings, numbers). With ``--record`` the data is
        kept in the cassette; with ``--replay`` it comes from there and
        ``perform`` is never called. ``kind`` names the protocol (``sql``).
        """
        # No local holds the backend: ``perform`` may be the caller's own code.
        if not isinstance(_sealed(self).backend, Exchanging):
            return perform()
        sealed = _sealed(self)
        result: _T = cast("Exchanging", sealed.backend).exchange(kind, request, perform)
        return result

    def connect(self) -> None:
        """Reach the target before the first check; raise ``HostUnavailable`` if it cannot."""
        backend = _sealed(self).backend
        if isinstance(backend, Connecting):
            backend.connect()

    def read_text(self, path: str) -> str:
        """Return the contents of a file on the host; raise ``FileNotFoundError`` if absent."""
        result = self.run(["cat", "--", path])
        if not result.succeeded:
            raise FileNotFoundError(result.stderr.strip() or f"cannot read {path} on {self.name}")
        return result.stdout

    def exists(self, path: str) -> bool:
        """Return True if ``path`` exists on the host."""
        return self.run(["test", "-e", path]).succeeded

    def close(self) -> None:
        """Close the backend's connections."""
        _sealed(self).backend.close()

    # System helpers. They only run ordinary read-only commands, so they work the same
    # locally, over SSH and against a replayed cassette; what they return, and the
    # parsers of what the commands print, live in ``runbook.hosts.system``,
    # ``filesystems`` and ``sockets``.

    def cpu_times(self, interval: float = 0.5) -> system.CpuTimes:
        """Sample /proc/stat over ``interval`` seconds: user, system, iowait, steal, idle %."""
        if interval <= 0:
            raise ValueError("interval must be a positive number of seconds")
        result = self.run("head -n 1 /proc/stat; sleep %s; head -n 1 /proc/stat", f"{interval:.3f}")
        readings = system.parse_proc_stat(result.check_output(self.name))
        if len(readings) != 2:
            raise ValueError(f"expected two readings of /proc/stat, got {len(readings)}")
        return system.CpuTimes.from_counters(*readings)

    def cpu_percent(self, interval: float = 0.5) -> float:
        """Return the share of CPU time spent busy over ``interval`` seconds (0-100)."""
        return self.cpu_times(interval).busy

    def cpu_count(self) -> int:
        """Return the number of online CPUs."""
        return system.parse_cpu_list(self.read_text("/sys/devices/system/cpu/online"))

    def load_average(self) -> system.LoadAverage:
        """Return the 1, 5 and 15 minute load averages."""
        return system.parse_loadavg(self.read_text("/proc/loadavg"))

    def memory(self) -> system.Memory:
        """Return memory and swap figures from /proc/meminfo."""
        return system.parse_meminfo(self.read_text("/proc/meminfo"))

    def disk_usage(self, path: str = "/") -> filesystems.DiskUsage:
        """Return size and use of the filesystem holding ``path``."""
        return filesystems.parse_df(self.run("df -P -k %s", path).check_output(self.name), path)

    def inode_usage(self, path: str = "/") -> filesystems.InodeUsage:
        """Return how many inodes the filesystem holding ``path`` has and uses."""
        output = self.run("df -P -i %s", path).check_output(self.name)
        return filesystems.parse_df_inodes(output, path)

    def tcp_connections(self, state: str | None = None) -> list[sockets.TcpConnection]:
        """Return the TCP sockets (listeners included), or those in ``state`` (``TIME-WAIT``...)."""
        wanted = sockets.normalize_state(state) if state is not None else None
        result = self.run(["ss", "-tanpH"])
        connections = sockets.parse_tcp_connections(result.check_output(self.name))
        return [row for row in connections if wanted is None or row.state == wanted]

    def listening_ports(self) -> list[sockets.ListeningSocket]:
        """Return the TCP sockets listening for connections, with their accept queues."""
        return sockets.parse_listening_ports(self.run(["ss", "-ltnpH"]).check_output(self.name))

    def open_files(self, pid: int) -> sockets.OpenFiles:
        """Return how many files process ``pid`` has open, where they point, and its limits."""
        # ProcessLookupError: no such process; PermissionError: another user's descriptors.
        pid = int(pid)
        result = self.run(sockets.OPEN_FILES_COMMAND, pid, pid, pid)
        if "Permission denied" in result.stderr:
            raise PermissionError(
                f"cannot read the open files of pid {pid} on {self.name}: "
                + result.stderr.strip().splitlines()[0]
            )
        try:
            return sockets.parse_open_files(result.stdout, pid)
        except ProcessLookupError:
            raise ProcessLookupError(f"no process {pid} on {self.name}") from None

    def top_processes(self, by: str = "cpu", limit: int = 10) -> list[system.Process]:
        """Return the processes using the most CPU (sampled now) or memory, largest first."""
        if by not in ("cpu", "memory", "threads"):
            raise ValueError(f"cannot order processes by {by!r}: use 'cpu', 'memory' or 'threads'")
        interval = 0.5  # CPU use is sampled now, like top's, not ps's lifetime average
        # Not check_output(): cat fails for processes that exit while it runs, which is fine.
        result = self.run(system.TOP_COMMAND, f"{interval:.3f}")
        try:
            return system.parse_top_processes(result.stdout, cast("system.ProcessOrder", by), limit)
        except ValueError as exc:
            raise RuntimeError(result.describe_failure(self.name, str(exc))) from None

    def process_count(self) -> system.ProcessCount:
        """Return the number of processes and threads on the host."""
        # cat exits non-zero when a process ends while it runs; the rest is still good.
        result = self.run("cat /proc/stat /proc/[0-9]*/stat")
        try:
            return system.parse_process_count(result.stdout)
        except ValueError as exc:
            raise RuntimeError(result.describe_failure(self.name, str(exc))) from None

    def uptime(self) -> float:
        """Return seconds since the host booted."""
        return system.parse_uptime(self.read_text("/proc/uptime"))

    def restart_service(self, service: str) -> CommandResult:
        """Restart a systemd unit (in actions: checks are refused it); raise if it fails."""
        result = self.run("systemctl restart %s", service)
        evidence(f"systemctl restart {service}", result)
        if not result.succeeded:
            raise RuntimeError(f"restart of {service} failed: {result.stderr.strip()}")
        return result
