"""Network helpers: TCP connections by state, listening ports, open files against limits.

Every helper runs ordinary read-only commands (``ss``, ``find``, ``grep``, ``ps``)
through ``Host.run`` and parses what they printed in pure ``parse_*`` functions,
so the same code works locally, over SSH and against a replayed cassette.
``host.tcp_connections(state)``, ``host.listening_ports()`` and
``host.open_files(pid)`` call them; the ``net`` fixture binds them to the current
target for runbooks, with ``net.open_files_scan()`` for every process at once.
Without root, ``ss`` names only the login user's processes and ``/proc/PID/fd``
can be read for those only.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING

from runbook import fixture

if TYPE_CHECKING:
    from runbook import Host

#: ``ss`` state names by the other names people use for them (``netstat``, RFC 793).
STATE_ALIASES = {
    "ESTABLISHED": "ESTAB",
    "SYN-RECEIVED": "SYN-RECV",
    "LISTENING": "LISTEN",
    "CLOSED": "UNCONN",
}
#: The TCP states ``ss`` prints.
STATES = (
    "ESTAB",
    "SYN-SENT",
    "SYN-RECV",
    "FIN-WAIT-1",
    "FIN-WAIT-2",
    "TIME-WAIT",
    "UNCONN",
    "CLOSE-WAIT",
    "LAST-ACK",
    "LISTEN",
    "CLOSING",
)

# users:(("python3",pid=21188,fd=4),...): the first process holding the socket.
_SS_PROCESS = re.compile(r'\("([^"]*)",pid=(\d+),')
# find /proc/[0-9]*/fd ... -printf '%h\n' | sort | uniq -c
_FD_COUNT = re.compile(r"^\s*(\d+)\s+/proc/(\d+)/fd$")
# grep -H 'Max open files' /proc/[0-9]*/limits
_LIMIT_ROW = re.compile(r"^/proc/(\d+)/limits:Max open files\s+(\S+)\s+(\S+)")
_DENIED = re.compile(r"^find: .(/proc/(\d+))/fd.: Permission denied$", re.MULTILINE)
_PS_ROW = re.compile(r"^\s*(\d+)\s+(\S+)\s+(.*)$")
# find /proc/PID/fd ... -printf 'fd %f\t%l\n': a descriptor and where it points.
_FD_TARGET = re.compile(r"^fd (\d+)\t(.*)$")

_SCAN_COUNTS = "find /proc/[0-9]*/fd -mindepth 1 -maxdepth 1 -printf '%h\\n' | sort | uniq -c"
_SCAN_LIMITS = "grep -H 'Max open files' /proc/[0-9]*/limits"
_ONE_PROCESS = (
    "find /proc/%s/fd -mindepth 1 -maxdepth 1 -printf 'fd %%f\\t%%l\\n'; "
    "grep -H 'Max open files' /proc/%s/limits; ps -o pid=,user:32=,comm= -p %s"
)


@dataclasses.dataclass(frozen=True, slots=True)
class TcpConnection:
    """One TCP socket as ``ss -tanp`` shows it."""

    #: The state as ``ss`` prints it: ``ESTAB``, ``TIME-WAIT``, ``LISTEN``...
    state: str
    #: ``address:port`` (IPv6 in brackets: ``[::1]:80``).
    local: str
    peer: str
    recv_q: int
    send_q: int
    #: The process holding the socket; None when ``ss`` may not say (another user's).
    pid: int | None
    command: str

    @property
    def process(self) -> str:
        """``command (pid N)``, or "" when the owner is not known."""
        return f"{self.command} (pid {self.pid})" if self.pid is not None else ""


@dataclasses.dataclass(frozen=True, slots=True)
class ListeningSocket:
    """A TCP socket listening for connections (``ss -ltnp``)."""

    #: The address it is bound to; ``*`` for every address.
    address: str
    port: int
    #: Connections waiting for ``accept()`` (Recv-Q of a listener).
    queued: int
    #: The accept queue's size (Send-Q of a listener).
    backlog: int
    pid: int | None
    command: str

    @property
    def process(self) -> str:
        """``command (pid N)``, or "" when the owner is not known."""
        return f"{self.command} (pid {self.pid})" if self.pid is not None else ""

    @property
    def is_queue_full(self) -> bool:
        """True when new connections are dropped: the accept queue is full."""
        return self.queued >= self.backlog > 0


@dataclasses.dataclass(frozen=True, slots=True)
class OpenFiles:
    """How many files a process has open, against its limit (RLIMIT_NOFILE)."""

    pid: int
    #: The process name (``comm``); "" when it ended during the scan.
    command: str
    user: str
    #: Open descriptors: files, sockets, pipes...
    count: int
    #: The soft limit, the one that makes ``open()`` fail with EMFILE; None when unlimited.
    soft_limit: int | None
    hard_limit: int | None
    #: Where each descriptor points (``open_files`` only; empty in a scan).
    targets: tuple[str, ...] = ()

    @property
    def percent(self) -> float:
        """Open descriptors in percent of the soft limit (0 when there is none)."""
        return 100.0 * self.count / self.soft_limit if self.soft_limit else 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class OpenFilesScan:
    """Open files of every readable process, closest to its limit first, and the unreadable."""

    processes: tuple[OpenFiles, ...]
    #: ``/proc/PID`` of the processes whose descriptors could not be read (another user's).
    unreadable: tuple[str, ...]


# Parsers: pure functions of command output.


def normalize_state(state: str) -> str:
    """Return the ``ss`` name of a TCP state (``time_wait`` and ``ESTABLISHED`` are fine)."""
    name = state.strip().upper().replace("_", "-")
    name = STATE_ALIASES.get(name, name)
    if name not in STATES:
        raise ValueError(f"unknown TCP state {state!r}: use one of {', '.join(STATES)}")
    return name


def _owner(fields: list[str]) -> tuple[int | None, str]:
    found = _SS_PROCESS.search(fields[5]) if len(fields) > 5 else None
    return (int(found[2]), found[1]) if found else (None, "")


def parse_tcp_connections(text: str) -> list[TcpConnection]:
    """Parse ``ss -tanpH`` output: state, queues, endpoints and the owning process if shown."""
    connections = []
    for line in text.splitlines():
        fields = line.split(None, 5)
        if len(fields) < 5 or not (fields[1].isdigit() and fields[2].isdigit()):
            continue
        pid, command = _owner(fields)
        connections.append(
            TcpConnection(
                fields[0], fields[3], fields[4], int(fields[1]), int(fields[2]), pid, command
            )
        )
    return connections


def parse_listening_ports(text: str) -> list[ListeningSocket]:
    """Parse ``ss -ltnpH`` output: address, port, accept queue and the owning process."""
    sockets = []
    for connection in parse_tcp_connections(text):
        address, _, port = connection.local.rpartition(":")
        if not port.isdigit():
            continue
        address = address.split("%")[0]  # 127.0.0.53%lo: the interface is not the address
        sockets.append(
            ListeningSocket(
                address or "*",
                int(port),
                connection.recv_q,
                connection.send_q,
                connection.pid,
                connection.command,
            )
        )
    return sockets


def parse_fd_counts(text: str) -> dict[int, int]:
    """Parse ``find /proc/[0-9]*/fd ... -printf '%h\\n' | sort | uniq -c``: pid → open fds."""
    counts: dict[int, int] = {}
    for line in text.splitlines():
        match = _FD_COUNT.match(line)
        if match:
            counts[int(match[2])] = int(match[1])
    return counts


def parse_fd_limits(text: str) -> dict[int, tuple[int | None, int | None]]:
    """Parse ``grep -H 'Max open files' /proc/*/limits``: pid → (soft, hard); None: unlimited."""
    limits: dict[int, tuple[int | None, int | None]] = {}
    for line in text.splitlines():
        match = _LIMIT_ROW.match(line)
        if match:
            soft, hard = (int(value) if value.isdigit() else None for value in match.group(2, 3))
            limits[int(match[1])] = (soft, hard)
    return limits


def parse_denied(stderr: str) -> tuple[str, ...]:
    """Return the ``/proc/PID`` folders whose descriptors ``find`` was not allowed to read."""
    return tuple(dict.fromkeys(match[1] for match in _DENIED.finditer(stderr)))


def parse_processes(text: str) -> dict[int, tuple[str, str]]:
    """Parse ``ps -o pid=,user:32=,comm=`` output: pid → (user, command)."""
    processes: dict[int, tuple[str, str]] = {}
    for line in text.splitlines():
        match = _PS_ROW.match(line)
        if match:
            processes[int(match[1])] = (match[2], match[3].strip())
    return processes


def parse_open_files_scan(counts: str, limits: str, ps: str, stderr: str = "") -> OpenFilesScan:
    """Join the three commands of ``open_files_scan``; closest to the soft limit first."""
    soft_hard = parse_fd_limits(limits)
    names = parse_processes(ps)
    processes = []
    for pid, count in parse_fd_counts(counts).items():
        soft, hard = soft_hard.get(pid, (None, None))
        user, command = names.get(pid, ("", ""))
        processes.append(OpenFiles(pid, command, user, count, soft, hard))
    processes.sort(key=lambda row: (-row.percent, -row.count, row.pid))
    return OpenFilesScan(tuple(processes), parse_denied(stderr))


def parse_open_files(text: str, pid: int) -> OpenFiles:
    """Parse the output of the ``open_files`` command for ``pid``.

    Raise ``ProcessLookupError`` when it printed nothing about that process.
    """
    targets = [match[2] for line in text.splitlines() if (match := _FD_TARGET.match(line))]
    soft, hard = parse_fd_limits(text).get(pid, (None, None))
    names = parse_processes("\n".join(line for line in text.splitlines() if line[:1] != "/"))
    if pid not in names and soft is None and hard is None and not targets:
        raise ProcessLookupError(f"no process {pid}")
    user, command = names.get(pid, ("", ""))
    return OpenFiles(pid, command, user, len(targets), soft, hard, tuple(targets))


# Helpers: read-only commands on the host.


def tcp_connections(host: Host, state: str | None = None) -> list[TcpConnection]:
    """Return the host's TCP sockets (listeners included), or those in ``state`` only."""
    wanted = normalize_state(state) if state is not None else None
    result = host.run(["ss", "-tanpH"])
    connections = parse_tcp_connections(result.check_output(host.name))
    return [row for row in connections if wanted is None or row.state == wanted]


def listening_ports(host: Host) -> list[ListeningSocket]:
    """Return the TCP sockets listening on the host, with their accept queues."""
    return parse_listening_ports(host.run(["ss", "-ltnpH"]).check_output(host.name))


def open_files(host: Host, pid: int) -> OpenFiles:
    """Return what process ``pid`` has open and its limits.

    Raise ``ProcessLookupError`` if there is no such process and
    ``PermissionError`` if its descriptors may not be read (another user's).
    """
    pid = int(pid)
    result = host.run(_ONE_PROCESS, pid, pid, pid)
    if "Permission denied" in result.stderr:
        raise PermissionError(
            f"cannot read the open files of pid {pid} on {host.name}: "
            + result.stderr.strip().splitlines()[0]
        )
    try:
        return parse_open_files(result.stdout, pid)
    except ProcessLookupError:
        raise ProcessLookupError(f"no process {pid} on {host.name}") from None


def open_files_scan(host: Host) -> OpenFilesScan:
    """Count every process's open files against its soft limit; closest to it first.

    Processes whose descriptors may not be read are listed in ``unreadable``.
    """
    # The globs need a shell; a process that exits meanwhile only adds a stderr line.
    counts = host.run(_SCAN_COUNTS)
    if not parse_fd_counts(counts.stdout) and not parse_denied(counts.stderr):
        raise RuntimeError(counts.describe_failure(host.name, "no open files counted"))
    limits = host.run(_SCAN_LIMITS).stdout
    names = host.run(["ps", "-e", "-o", "pid=,user:32=,comm="]).stdout
    return parse_open_files_scan(counts.stdout, limits, names, counts.stderr)


class NetworkHelpers:
    """The network helpers bound to one host: what the ``net`` fixture gives a check."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def tcp_connections(self, state: str | None = None) -> list[TcpConnection]:
        """Return the TCP sockets, or those in ``state`` (``tcp_connections``)."""
        return tcp_connections(self.host, state)

    def listening_ports(self) -> list[ListeningSocket]:
        """Return the listening TCP sockets with their accept queues."""
        return listening_ports(self.host)

    def open_files(self, pid: int) -> OpenFiles:
        """Return what process ``pid`` has open and its limits (``open_files``)."""
        return open_files(self.host, pid)

    def open_files_scan(self) -> OpenFilesScan:
        """Return every process's open files against its limit (``open_files_scan``)."""
        return open_files_scan(self.host)


@fixture(scope="host")
def net(host: Host) -> NetworkHelpers:
    """Network helpers (TCP connections, listening ports, open files) on the current target."""
    return NetworkHelpers(host)
