"""What the socket and open-file helpers of ``Host`` return, and the parsers behind them.

``host.tcp_connections(state)``, ``host.listening_ports()`` and ``host.open_files(pid)``
run ``ss``, ``find``, ``grep`` and ``ps`` on the target and hand what they printed to
the pure ``parse_*`` functions here, so the parsing can be tested without any host.
This module imports nothing that runs commands. Without root, ``ss`` names only the
login user's processes and ``/proc/PID/fd`` can be read for those only.
"""

from __future__ import annotations

import dataclasses
import re

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
# grep -H 'Max open files' /proc/[0-9]*/limits
_LIMIT_ROW = re.compile(r"^/proc/(\d+)/limits:Max open files\s+(\S+)\s+(\S+)")
_PS_ROW = re.compile(r"^\s*(\d+)\s+(\S+)\s+(.*)$")
# find /proc/PID/fd ... -printf 'fd %f\t%l\n': a descriptor and where it points.
_FD_TARGET = re.compile(r"^fd (\d+)\t(.*)$")

#: What ``Host.open_files`` runs for one process: where its descriptors point, its
#: limits and its owner.
OPEN_FILES_COMMAND = (
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


def parse_fd_limits(text: str) -> dict[int, tuple[int | None, int | None]]:
    """Parse ``grep -H 'Max open files' /proc/*/limits``: pid → (soft, hard); None: unlimited."""
    limits: dict[int, tuple[int | None, int | None]] = {}
    for line in text.splitlines():
        match = _LIMIT_ROW.match(line)
        if match:
            soft, hard = (int(value) if value.isdigit() else None for value in match.group(2, 3))
            limits[int(match[1])] = (soft, hard)
    return limits


def parse_processes(text: str) -> dict[int, tuple[str, str]]:
    """Parse ``ps -o pid=,user:32=,comm=`` output: pid → (user, command)."""
    processes: dict[int, tuple[str, str]] = {}
    for line in text.splitlines():
        match = _PS_ROW.match(line)
        if match:
            processes[int(match[1])] = (match[2], match[3].strip())
    return processes


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
