"""Storage helpers: the largest files, and deleted files still held open.

Every helper runs ordinary read-only commands (``find``, ``stat``, ``ps``) through
``Host.run`` and parses what they printed in pure ``parse_*`` functions, so the same
code works locally, over SSH and against a replayed cassette. The ``disk`` fixture
binds them to the current target for runbooks: ``disk.largest_files(...)``,
``disk.deleted_open_files(path)``. Disk and inode usage are ``Host`` helpers
(``host.disk_usage(path)``, ``host.inode_usage(path)``): their records and ``df``
parsers live in ``runbook.hosts.filesystems`` (the records can be imported from
here too).
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING

from runbook import fixture
from runbook.hosts.filesystems import DiskUsage as DiskUsage
from runbook.hosts.filesystems import InodeUsage as InodeUsage

if TYPE_CHECKING:
    from runbook import Host

# find -printf '%s\t%b\t%u\t%p\n': size, 512-byte blocks, owner, path.
_FIND_ROW = re.compile(r"^(\d+)\t(\d+)\t([^\t]*)\t(.+)$")
# find -printf '%p\t%l\n' on /proc/PID/fd/N: the descriptor and where it points.
_FD_ROW = re.compile(r"^/proc/(\d+)/fd/(\d+)\t(.*) \(deleted\)$")
# stat -L -c '%d\t%s\t%b\t%n': device, size, 512-byte blocks, name.
_STAT_ROW = re.compile(r"^(\d+)\t(\d+)\t(\d+)\t(.+)$")
# find: '/root/x': Permission denied / stat: cannot statx '/proc/1/fd/3': Permission denied
_DENIED = re.compile(r"^.*?['\u2018](.+)['\u2019]: Permission denied$", re.M)
_PS_COMM_ROW = re.compile(r"^\s*(\d+)\s+(\S+)\s?(.*)$")


@dataclasses.dataclass(frozen=True, slots=True)
class LargeFile:
    """A regular file and the space it takes."""

    path: str
    #: Space the file takes on disk: a sparse file takes less than its size.
    allocated_bytes: int
    #: The apparent size (``ls -l``).
    size_bytes: int
    owner: str


@dataclasses.dataclass(frozen=True, slots=True)
class DeletedOpenFile:
    """A deleted file that a process still holds open, so its space is not freed."""

    pid: int
    #: The process name (``comm``); empty when the process ended during the scan.
    command: str
    user: str
    #: The descriptor number: ``/proc/PID/fd/FD`` still reaches the file's contents.
    fd: int
    #: The name the file had before it was deleted.
    path: str
    allocated_bytes: int
    size_bytes: int
    #: The device number (``st_dev``) of the filesystem the file is on.
    device: int


@dataclasses.dataclass(frozen=True, slots=True)
class FileScan:
    """Files found by a scan, and the places the scan could not read (permission denied)."""

    files: tuple[LargeFile, ...]
    unreadable: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class DeletedFileScan:
    """Deleted files held open, and the processes whose descriptors could not be read."""

    files: tuple[DeletedOpenFile, ...]
    unreadable: tuple[str, ...]


def parse_find_files(text: str, limit: int, min_bytes: int = 0) -> list[LargeFile]:
    """Parse ``find -printf '%s\\t%b\\t%u\\t%p\\n'``; keep the ``limit`` largest files.

    Files are ordered by the space they take on disk (512-byte blocks), then by
    path; files taking less than ``min_bytes`` are left out.
    """
    files = []
    for line in text.splitlines():
        match = _FIND_ROW.match(line)
        if match is None:
            continue
        allocated = int(match[2]) * 512
        if allocated >= min_bytes:
            files.append(LargeFile(match[4], allocated, int(match[1]), match[3]))
    files.sort(key=lambda file: (-file.allocated_bytes, file.path))
    return files[:limit]


def parse_unreadable(stderr: str) -> tuple[str, ...]:
    """Return the paths that ``find`` or ``stat`` could not read for lack of permission."""
    return tuple(match[1] for match in _DENIED.finditer(stderr))


def parse_deleted_open_files(find_text: str, stat_text: str, ps_text: str) -> list[DeletedOpenFile]:
    """Join what the three commands of ``deleted_open_files`` printed; largest first.

    ``find_text`` lists ``/proc/PID/fd/N<TAB>target (deleted)``, ``stat_text``
    holds ``stat -L -c '%d\\t%s\\t%b\\t%n'`` of those descriptors and ``ps_text``
    ``ps -o pid=,user:32=,comm=`` of their processes. Descriptors that closed in
    between (no stat line) are left out.
    """
    stats = {}
    for line in stat_text.splitlines():
        match = _STAT_ROW.match(line)
        if match:
            stats[match[4]] = (int(match[1]), int(match[2]), int(match[3]) * 512)
    processes = {}
    for line in ps_text.splitlines():
        match = _PS_COMM_ROW.match(line)
        if match:
            processes[int(match[1])] = (match[2], match[3].strip())
    files = []
    for line in find_text.splitlines():
        match = _FD_ROW.match(line)
        if match is None:
            continue
        descriptor = f"/proc/{match[1]}/fd/{match[2]}"
        if descriptor not in stats:
            continue
        device, size, allocated = stats[descriptor]
        pid = int(match[1])
        user, command = processes.get(pid, ("", ""))
        files.append(
            DeletedOpenFile(pid, command, user, int(match[2]), match[3], allocated, size, device)
        )
    files.sort(key=lambda file: (-file.allocated_bytes, file.pid, file.fd))
    return files


def largest_files(host: Host, path: str = "/", limit: int = 10, min_bytes: int = 0) -> FileScan:
    """Find the ``limit`` files under ``path`` taking the most space, at least ``min_bytes``.

    The scan stays on the filesystem holding ``path`` (``find -xdev``) and
    measures the space each file takes on disk, so a sparse file counts for
    what it really uses. Directories it may not read are listed in
    ``unreadable`` rather than failing the scan.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    if min_bytes < 0:
        raise ValueError("min_bytes must not be negative")
    # -size compares the apparent size, rounded up to KiB: a cheap first cut.
    command = ["find", path, "-xdev", "-type", "f"]
    if min_bytes >= 2048:
        command += ["-size", f"+{min_bytes // 1024 - 1}k"]
    result = host.run([*command, "-printf", r"%s\t%b\t%u\t%p\n"])
    unreadable = parse_unreadable(result.stderr)
    if not result.succeeded and not (unreadable or result.stdout):
        raise RuntimeError(result.describe_failure(host.name))
    return FileScan(tuple(parse_find_files(result.stdout, limit, min_bytes)), unreadable)


def deleted_open_files(host: Host, path: str | None = None) -> DeletedFileScan:
    """Find deleted files that processes still hold open, largest first.

    With ``path``, only files on the filesystem holding ``path`` count. Without
    root, only the user's own processes can be seen; the others are listed in
    ``unreadable`` as ``/proc/PID``. Files that were never on disk (memfd, deleted shared memory
    outside a filesystem) do not start with ``/`` and are left out.
    """
    # The glob needs a shell; find prints each deleted target after the descriptor.
    listing = host.run("find /proc/[0-9]*/fd -lname '/*(deleted)' -printf '%p\\t%l\\n'")
    # One entry per process whose descriptors could not be read, not one per descriptor.
    unreadable = tuple(
        dict.fromkeys("/".join(entry.split("/")[:3]) for entry in parse_unreadable(listing.stderr))
    )
    descriptors = [
        f"/proc/{match[1]}/fd/{match[2]}"
        for line in listing.stdout.splitlines()
        if (match := _FD_ROW.match(line))
    ]
    if not listing.succeeded and not (listing.stdout or unreadable):
        raise RuntimeError(listing.describe_failure(host.name))
    device = None
    stat_text = ps_text = ""
    if path is not None:
        # stat fails for descriptors closed since find saw them; the others still print.
        where = host.run(["stat", "-L", "-c", "%d\t%s\t%b\t%n", "--", path])
        device = int(where.check_output(host.name).split("\t", 1)[0])
    if descriptors:
        stat_text = host.run(["stat", "-L", "-c", "%d\t%s\t%b\t%n", "--", *descriptors]).stdout
        pids = sorted({int(descriptor.split("/")[2]) for descriptor in descriptors})
        ps_text = host.run(
            ["ps", "-o", "pid=,user:32=,comm=", "-p", ",".join(map(str, pids))]
        ).stdout
    files = parse_deleted_open_files(listing.stdout, stat_text, ps_text)
    if device is not None:
        files = [file for file in files if file.device == device]
    return DeletedFileScan(tuple(files), unreadable)


class Disk:
    """The disk helpers bound to one host: what the ``disk`` fixture gives a check."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def largest_files(self, path: str = "/", limit: int = 10, min_bytes: int = 0) -> FileScan:
        """Find the ``limit`` files under ``path`` taking the most space (``largest_files``)."""
        return largest_files(self.host, path, limit, min_bytes)

    def deleted_open_files(self, path: str | None = None) -> DeletedFileScan:
        """Find deleted files still held open, on ``path``'s filesystem if given."""
        return deleted_open_files(self.host, path)


@fixture(scope="host")
def disk(host: Host) -> Disk:
    """Disk helpers (largest files, deleted open files) on the current target."""
    return Disk(host)
