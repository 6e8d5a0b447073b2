"""Disk full

Symptoms: "No space left on device" errors, writes and logins failing, a
database or queue refusing to write, df showing a filesystem at or near 100%.
The checks tell a filesystem that is simply full from one out of inodes, from a
few huge (log) files, and from space still held by deleted files that a
process keeps open (df says full, du cannot find the space).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

from runbook import action
from runbook import check
from runbook import evidence
from runbook import hookimpl
from runbook import hypothesis
from runbook import inconclusive
from runbook import rule_in
from runbook import severity_from_findings
from runbook import skip

if TYPE_CHECKING:
    from runbook.plugins.storage import Disk
    from runbook.plugins.storage import DiskUsage

    from runbook import Host

PARAMS = {
    # A path on the filesystem to investigate (its mount point or anything under it).
    "path": "/",
    # Percent of the blocks in use above which the filesystem is almost full.
    "used_percent": 90.0,
    # Percent of the inodes in use above which they are exhausted.
    "inodes_percent": 90.0,
    # A file taking at least this many MiB on disk AND ``huge_file_percent`` is huge; on a
    # small filesystem, a file taking half of it is huge whatever its size.
    "huge_file_mb": 100.0,
    # ... and at least this percent of the filesystem's size.
    "huge_file_percent": 5.0,
    # How many of the largest files to list.
    "files_listed": 10,
    # Deleted-but-open files matter when they hold this many MiB AND ``deleted_open_percent``
    # (or half of a small filesystem, whatever its size).
    "deleted_open_mb": 100.0,
    # ... and at least this percent of the filesystem's size.
    "deleted_open_percent": 5.0,
    # The log file that truncate_log_file empties (one named by the huge-files check).
    "log_file": "",
    # The service that restart_service restarts to release deleted files it holds.
    "service": "",
}
TAGS = ["disk", "storage", "linux"]

MIB = 1 << 20

full = hypothesis("filesystem-full", "The filesystem is almost full")
inodes = hypothesis("inodes-exhausted", "The filesystem has run out of inodes (many small files)")
huge = hypothesis("huge-files", "A few huge files (often logs) take most of the space")
deleted = hypothesis(
    "deleted-but-open", "Deleted files are still held open by a process, so space is not freed"
)


def _size(size: float) -> str:
    """Return ``size`` bytes in GiB from 1 GiB up, else in MiB."""
    return f"{size / (1 << 30):.1f} GiB" if size >= 1 << 30 else f"{size / MIB:.1f} MiB"


def _share(size: float, usage: DiskUsage) -> str:
    return f"{100 * size / max(usage.total_kb * 1024, 1):.0f}% of {usage.mount}"


def _floor(usage: DiskUsage, mib: float, percent: float) -> int:
    """Return the bytes from which something takes "most of the space" of the filesystem.

    At least ``percent`` of the filesystem and ``mib`` MiB, but never more than half of
    it: a 63 MiB file on a 64 MiB filesystem takes most of it, though it is small.
    """
    size = usage.total_kb * 1024
    return int(max(percent / 100 * size, min(mib * MIB, size / 2)))


def _could_hide(usage: DiskUsage, floor: int) -> bool:
    """True when what a scan could not read may hold ``floor`` bytes: as much is in use."""
    return bool(usage.used_kb * 1024 >= floor)


@check
def filesystem_has_room(host: Host, params: Any) -> str:
    """Symptom: fail when the filesystem holding ``path`` is short of blocks or inodes."""
    usage = host.disk_usage(params.path)
    nodes = host.inode_usage(params.path)
    evidence("Filesystem (KiB)", [usage])
    evidence("Inodes", [nodes])
    assert usage.used_percent < params.used_percent and (
        nodes.used_percent < params.inodes_percent
    ), (
        f"{usage.mount} ({usage.filesystem}) is {usage.used_percent:.0f}% full and "
        f"{nodes.used_percent:.0f}% of its inodes are used"
    )
    return (
        f"{usage.mount} {usage.used_percent:.0f}% full (threshold {params.used_percent:.0f}%), "
        f"{nodes.used_percent:.0f}% of inodes used (threshold {params.inodes_percent:.0f}%)"
    )


@check(tests=full)
def filesystem_not_almost_full(host: Host, params: Any) -> str:
    """Rule ``filesystem-full`` out when less than ``used_percent`` of the blocks are used."""
    usage = host.disk_usage(params.path)
    evidence("Filesystem (KiB)", [usage])
    assert usage.used_percent < params.used_percent, (
        f"{usage.mount} ({usage.filesystem}) is {usage.used_percent:.0f}% full "
        f"(threshold {params.used_percent:.0f}%): {usage.available_kb} KiB free "
        f"of {usage.total_kb} KiB"
    )
    return (
        f"{usage.mount} {usage.used_percent:.0f}% full ({_size(usage.used_kb * 1024)} of "
        f"{_size(usage.total_kb * 1024)}), threshold {params.used_percent:.0f}%"
    )


@check(tests=inodes)
def inodes_not_exhausted(host: Host, params: Any) -> str:
    """Rule ``inodes-exhausted`` out when less than ``inodes_percent`` of the inodes are used."""
    nodes = host.inode_usage(params.path)
    evidence("Inodes", [nodes])
    if nodes.total == 0:
        return f"{nodes.mount} ({nodes.filesystem}) has no fixed inode table: it cannot run out"
    assert nodes.used_percent < params.inodes_percent, (
        f"{nodes.mount} ({nodes.filesystem}) uses {nodes.used_percent:.0f}% of its inodes "
        f"(threshold {params.inodes_percent:.0f}%): {nodes.free} free of {nodes.total}"
    )
    return (
        f"{nodes.mount} uses {nodes.used_percent:.0f}% of its inodes ({nodes.used} of "
        f"{nodes.total}), threshold {params.inodes_percent:.0f}%"
    )


@check(tests=huge)
def no_huge_files(host: Host, disk: Disk, params: Any) -> str:
    """Rule ``huge-files`` out when no file takes ``huge_file_mb`` and ``huge_file_percent``."""
    usage = host.disk_usage(params.path)
    floor = _floor(usage, params.huge_file_mb, params.huge_file_percent)
    scan = disk.largest_files(params.path, limit=params.files_listed, min_bytes=floor)
    evidence(f"Files of at least {_size(floor)} on {usage.mount}", list(scan.files))
    if scan.unreadable:
        evidence("Not readable by this user", "\n".join(scan.unreadable))
    if scan.files:
        rule_in(
            "; ".join(
                f"{file.path} takes {_size(file.allocated_bytes)} "
                f"({_share(file.allocated_bytes, usage)})"
                for file in scan.files[:3]
            )
            + f" (threshold {_size(floor)})"
        )
    # Folders that could not be read matter only if they could hold a huge file.
    if scan.unreadable and _could_hide(usage, floor):
        inconclusive(
            f"no file of {_size(floor)} or more found, but {len(scan.unreadable)} folder(s) "
            f"could not be read (first: {scan.unreadable[0]}); run as root to see them"
        )
    unseen = (
        f"; {len(scan.unreadable)} unreadable folder(s) could not hold one"
        if scan.unreadable
        else ""
    )
    return f"no file on {usage.mount} takes {_size(floor)} (the threshold) or more{unseen}"


@check(tests=deleted)
def no_deleted_files_held_open(host: Host, disk: Disk, params: Any) -> str:
    """Rule ``deleted-but-open`` out when deleted open files hold under ``deleted_open_mb``.

    Enough space held by the processes that could be read decides it, whatever the
    processes that could not be read hold.
    """
    usage = host.disk_usage(params.path)
    floor = _floor(usage, params.deleted_open_mb, params.deleted_open_percent)
    scan = disk.deleted_open_files(params.path)
    held = sum(file.allocated_bytes for file in scan.files)
    evidence("Deleted files still open, on this filesystem", list(scan.files))
    if scan.unreadable:
        evidence("Processes whose open files could not be read", "\n".join(scan.unreadable))
    if held >= floor:
        by_process: dict[tuple[int, str], int] = {}
        for file in scan.files:
            key = (file.pid, file.command)
            by_process[key] = by_process.get(key, 0) + file.allocated_bytes
        rule_in(
            f"deleted files still open hold {_size(held)} ({_share(held, usage)}; "
            f"threshold {_size(floor)}): "
            + "; ".join(
                f"{command} (pid {pid}) holds {_size(size)}"
                for (pid, command), size in sorted(by_process.items(), key=lambda kv: -kv[1])
            )
            + f", e.g. {scan.files[0].path}"
        )
    # Processes that could not be read matter only if what is in use could reach the floor.
    if scan.unreadable and _could_hide(usage, floor):
        count = len(scan.unreadable)
        inconclusive(
            f"deleted open files hold {_size(held)} (threshold {_size(floor)}), but the "
            f"open files of {count} "
            f"process{'es' if count > 1 else ''} could not be read "
            f"({', '.join(scan.unreadable[:3])}{', ...' if count > 3 else ''}); "
            "run as root to see them"
        )
    holders = len({file.pid for file in scan.files})
    by = f" by {holders} process{'es' if holders > 1 else ''}" if holders else ""
    unread = len(scan.unreadable)
    unseen = (
        f"; {unread} unreadable process{'es' if unread > 1 else ''} could not hold that much"
        if unread
        else ""
    )
    return (
        f"deleted files still open hold {_size(held)} on {usage.mount}{by}, "
        f"threshold {_size(floor)}{unseen}"
    )


@action(mitigates=[huge, full])
def truncate_log_file(host: Host, params: Any) -> None:
    """Empty ``log_file`` in place (the writer keeps its descriptor), freeing its space now."""
    if not params.log_file:
        skip("set the log_file parameter to one of the huge files the checks listed")
    result = host.run("truncate -s 0 -- %s", params.log_file)
    evidence(f"truncate {params.log_file}", result)
    if not result.succeeded:
        raise RuntimeError(f"truncate of {params.log_file} failed: {result.stderr.strip()}")


@action(mitigates=[huge, full])
def rotate_logs(host: Host, params: Any) -> None:
    """Force a log rotation, so that rotated logs are compressed and old ones removed."""
    result = host.run("logrotate --force /etc/logrotate.conf")
    evidence("logrotate --force", result)
    if not result.succeeded:
        raise RuntimeError(f"logrotate failed: {result.stderr.strip()}")


@action(mitigates=deleted)
def restart_service(host: Host, params: Any) -> None:
    """Restart ``service``, the one holding deleted files, so that it closes them."""
    if not params.service:
        skip("set the service parameter to the service of a process the checks named")
    host.restart_service(params.service)


#: The severity each ruled-in hypothesis suggests (P0..P4 as in docs/incidents.md).
#: One level less when the symptom check ran and did not confirm the symptom; nothing
#: ruled in: P2 when the filesystem is short of room, else none.
SEVERITY_BY_FINDING = {
    "filesystem-full": "P2",
    "inodes-exhausted": "P2",
    "huge-files": "P3",
    "deleted-but-open": "P3",
}


@hookimpl
def runbook_suggest_severity(result: Any) -> str | None:
    """Suggest a severity from what this run found; None when it found nothing."""
    return severity_from_findings(result, SEVERITY_BY_FINDING, symptom_only="P2")
