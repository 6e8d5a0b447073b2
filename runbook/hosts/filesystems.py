"""What the disk and inode helpers of ``Host`` return, and the ``df`` parsers behind them.

``host.disk_usage(path)`` and ``host.inode_usage(path)`` run ``df`` on the target
and hand what it printed to the pure ``parse_*`` functions here, so the parsing can
be tested without any host. This module imports nothing that runs commands.
"""

from __future__ import annotations

import dataclasses
import re

_DF_ROW = re.compile(
    r"^(?P<fs>.*?)\s+(?P<total>\d+)\s+(?P<used>\d+)\s+(?P<avail>\d+)\s+(?:\d+%|-)\s+(?P<mount>/.*)$"
)


@dataclasses.dataclass(frozen=True, slots=True)
class DiskUsage:
    """Size and use of the filesystem holding ``path``, in KiB (``df -P -k``)."""

    path: str
    filesystem: str
    mount: str
    total_kb: int
    used_kb: int
    available_kb: int
    #: used / (used + available), as df computes it: blocks reserved for root do not count.
    used_percent: float


@dataclasses.dataclass(frozen=True, slots=True)
class InodeUsage:
    """Inodes of the filesystem holding ``path`` (``df -P -i``)."""

    path: str
    filesystem: str
    mount: str
    #: 0 where the filesystem has no fixed number of inodes (btrfs, some network filesystems).
    total: int
    used: int
    free: int
    used_percent: float


def parse_df(text: str, path: str) -> DiskUsage:
    """Parse the output of ``df -P -k PATH`` (spaces in device or mount point are fine)."""
    for line in text.splitlines()[1:]:
        match = _DF_ROW.match(line)
        if match:
            used, available = int(match["used"]), int(match["avail"])
            return DiskUsage(
                path=path,
                filesystem=match["fs"],
                mount=match["mount"],
                total_kb=int(match["total"]),
                used_kb=used,
                available_kb=available,
                used_percent=100.0 * used / (used + available) if used + available else 0.0,
            )
    raise ValueError(f"no filesystem line in df output: {text.strip()!r}")


def parse_df_inodes(text: str, path: str) -> InodeUsage:
    """Parse the output of ``df -P -i PATH`` (``-`` for filesystems without an inode table)."""
    usage = parse_df(text, path)
    total, used, free = usage.total_kb, usage.used_kb, usage.available_kb
    return InodeUsage(
        path=path,
        filesystem=usage.filesystem,
        mount=usage.mount,
        total=total,
        used=used,
        free=free,
        used_percent=100.0 * used / total if total else 0.0,
    )
