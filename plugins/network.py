"""Network helpers: open files of every process against its limit, in one scan.

``host.tcp_connections(state)``, ``host.listening_ports()`` and ``host.open_files(pid)``
are ``Host`` helpers: their records and parsers live in ``runbook.hosts.sockets``
(the records can be imported from here too). The ``net`` fixture adds ``net.open_files_scan()``
for every process at once: it runs ordinary read-only commands (``find``, ``grep``,
``ps``) and parses what they printed in pure ``parse_*`` functions, so it works the
same locally, over SSH and against a replayed cassette. Without root,
``/proc/PID/fd`` can be read for the login user's processes only.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING

from runbook import fixture
from runbook.hosts.sockets import ListeningSocket as ListeningSocket
from runbook.hosts.sockets import OpenFiles as OpenFiles
from runbook.hosts.sockets import TcpConnection as TcpConnection
from runbook.hosts.sockets import parse_fd_limits
from runbook.hosts.sockets import parse_processes

if TYPE_CHECKING:
    from runbook import Host

# find /proc/[0-9]*/fd ... -printf '%h\n' | sort | uniq -c
_FD_COUNT = re.compile(r"^\s*(\d+)\s+/proc/(\d+)/fd$")
_DENIED = re.compile(r"^find: .(/proc/(\d+))/fd.: Permission denied$", re.MULTILINE)
_SCAN_COUNTS = "find /proc/[0-9]*/fd -mindepth 1 -maxdepth 1 -printf '%h\\n' | sort | uniq -c"
_SCAN_LIMITS = "grep -H 'Max open files' /proc/[0-9]*/limits"


@dataclasses.dataclass(frozen=True, slots=True)
class OpenFilesScan:
    """Open files of every readable process, closest to its limit first, and the unreadable."""

    processes: tuple[OpenFiles, ...]
    #: ``/proc/PID`` of the processes whose descriptors could not be read (another user's).
    unreadable: tuple[str, ...]


# Parsers: pure functions of command output.


def parse_fd_counts(text: str) -> dict[int, int]:
    """Parse ``find /proc/[0-9]*/fd ... -printf '%h\\n' | sort | uniq -c``: pid → open fds."""
    counts: dict[int, int] = {}
    for line in text.splitlines():
        match = _FD_COUNT.match(line)
        if match:
            counts[int(match[2])] = int(match[1])
    return counts


def parse_denied(stderr: str) -> tuple[str, ...]:
    """Return the ``/proc/PID`` folders whose descriptors ``find`` was not allowed to read."""
    return tuple(dict.fromkeys(match[1] for match in _DENIED.finditer(stderr)))


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


# Helpers: read-only commands on the host.


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

    def open_files_scan(self) -> OpenFilesScan:
        """Return every process's open files against its limit (``open_files_scan``)."""
        return open_files_scan(self.host)


@fixture(scope="host")
def net(host: Host) -> NetworkHelpers:
    """Network helpers (open files of every process) on the current target."""
    return NetworkHelpers(host)
