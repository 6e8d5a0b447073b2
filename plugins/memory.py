"""Memory helpers: figures of /proc/meminfo, swap activity, RSS growth, OOM kills.

Every helper runs ordinary read-only commands (``cat``, ``ps``, ``sleep``,
``dmesg``, ``journalctl``) through ``Host.run`` and parses what they printed in
pure ``parse_*`` functions, so the same code works locally, over SSH and against
a replayed cassette. The ``mem`` fixture binds them to the current target for
runbooks: ``mem.breakdown()``, ``mem.swap_activity(seconds)``, ``mem.growth(seconds)``,
``mem.kernel_log()``. ``host.memory()`` is a ``Host`` helper: its ``Memory`` record
and ``parse_meminfo`` live in ``runbook.hosts.system`` (``Memory`` can be imported
from here too).
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING

from runbook import fixture
from runbook.hosts.system import Memory as Memory
from runbook.hosts.system import parse_meminfo

if TYPE_CHECKING:
    from runbook import Host

#: Longest command line kept in ``MemoryGrowth.args``; longer ones end with "...".
ARGS_MAX_CHARS = 200
# cat /proc/uptime prints "seconds-since-boot idle-seconds": it starts each ps sample.
_UPTIME_LINE = re.compile(r"^(\d+(?:\.\d+)?) \d+(?:\.\d+)?$")
_PS_RSS_ROW = re.compile(r"^\s*(\d+)\s+(\S+)\s+(\d+) ?(.*)$")
# [ 6287.040998] Memory cgroup out of memory: Killed process 21096 (python3) total-vm:...
_KERNEL_TIME = re.compile(r"^\[\s*(\d+\.\d+)\]")
# comm may hold ") ": it ends where " total-vm" (or the line) starts.
_OOM_KILL = re.compile(r"Killed process (\d+) \((.*?)\)(?= total-vm|,|$)(?:.*?anon-rss:(\d+)kB)?")
_GROWTH_COMMAND = (
    "cat /proc/uptime; ps -ww -e -o pid=,user:32=,rss=,args=; sleep %s; "
    "cat /proc/uptime; ps -ww -e -o pid=,user:32=,rss=,args="
)


@dataclasses.dataclass(frozen=True, slots=True)
class MemoryBreakdown:
    """Where the memory of /proc/meminfo goes, in KiB: free, cache, the rest."""

    total_kb: int
    #: Memory nobody uses at all: low on any busy machine, because the kernel caches files.
    free_kb: int
    #: Memory that can be had without swapping: free plus cache the kernel can drop.
    available_kb: int
    buffers_kb: int
    #: The page cache (file contents), shared memory (tmpfs, shm) included.
    cached_kb: int
    #: Shared memory and tmpfs files: counted in ``cached_kb`` but not reclaimable.
    shmem_kb: int
    #: Kernel caches (dentries, inodes) the kernel can shrink.
    slab_reclaimable_kb: int

    @property
    def cache_kb(self) -> int:
        """Page cache and buffers that the kernel can drop when memory is needed."""
        return max(0, self.buffers_kb + self.cached_kb - self.shmem_kb) + self.slab_reclaimable_kb

    @property
    def free_percent(self) -> float:
        """MemFree, in percent of MemTotal."""
        return 100.0 * self.free_kb / self.total_kb if self.total_kb else 0.0

    @property
    def available_percent(self) -> float:
        """MemAvailable, in percent of MemTotal."""
        return 100.0 * self.available_kb / self.total_kb if self.total_kb else 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class SwapActivity:
    """Pages swapped in and out per second during a sample (pswpin/pswpout of /proc/vmstat)."""

    seconds: float
    pages_in_per_s: float
    pages_out_per_s: float

    @property
    def pages_per_s(self) -> float:
        """Pages moved to or from swap per second, both ways."""
        return self.pages_in_per_s + self.pages_out_per_s


@dataclasses.dataclass(frozen=True, slots=True)
class MemoryGrowth:
    """How much one process's resident memory (RSS) grew between two samples."""

    pid: int
    user: str
    rss_before_kb: int
    rss_after_kb: int
    #: Growth of RSS in MiB per second over the sample (negative when it shrank).
    mb_per_s: float
    args: str

    @property
    def grown_kb(self) -> int:
        """RSS gained during the sample, in KiB."""
        return self.rss_after_kb - self.rss_before_kb


@dataclasses.dataclass(frozen=True, slots=True)
class OomKill:
    """A process the kernel's OOM killer killed, from one kernel log line."""

    #: Seconds after boot, as the kernel log stamps it.
    seconds: float
    pid: int
    command: str
    #: Anonymous memory the process held when killed; 0 when the line does not say.
    anon_rss_kb: int
    #: Whether a memory cgroup limit (not the whole machine) ran out.
    in_cgroup: bool
    line: str


def parse_meminfo_breakdown(text: str) -> MemoryBreakdown:
    """Parse /proc/meminfo into free, available, cache and shared memory (KiB)."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            values[name.strip()] = int(fields[0])
    memory = parse_meminfo(text)  # MemTotal required, MemAvailable estimated if missing
    return MemoryBreakdown(
        total_kb=memory.total_kb,
        free_kb=values.get("MemFree", 0),
        available_kb=memory.available_kb,
        buffers_kb=values.get("Buffers", 0),
        cached_kb=values.get("Cached", 0),
        shmem_kb=values.get("Shmem", 0),
        slab_reclaimable_kb=values.get("SReclaimable", 0),
    )


def parse_swap_activity(text: str, seconds: float) -> SwapActivity:
    """Compute swap rates from two readings of /proc/vmstat, ``seconds`` apart."""
    readings: dict[str, list[int]] = {"pswpin": [], "pswpout": []}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in readings:
            readings[name].append(int(value))
    if any(len(values) != 2 for values in readings.values()):
        raise ValueError("expected two readings of pswpin and pswpout from /proc/vmstat")
    if seconds <= 0:
        raise ValueError("seconds must be positive")
    (in_before, in_after), (out_before, out_after) = readings["pswpin"], readings["pswpout"]
    return SwapActivity(
        seconds,
        max(0, in_after - in_before) / seconds,
        max(0, out_after - out_before) / seconds,
    )


def parse_memory_growth(text: str) -> list[MemoryGrowth]:
    """Compare two ``ps`` samples, each after a /proc/uptime line; fastest growth first.

    Processes missing from either sample, or whose command line changed (a
    reused pid), are left out. The rate uses the uptime between the samples.
    """
    samples: list[tuple[float, dict[int, tuple[str, int, str]]]] = []
    for line in text.splitlines():
        if (clock := _UPTIME_LINE.match(line.strip())) is not None:
            samples.append((float(clock[1]), {}))
        elif samples and (row := _PS_RSS_ROW.match(line)) is not None:
            samples[-1][1][int(row[1])] = (row[2], int(row[3]), row[4].strip())
    if len(samples) != 2:
        raise ValueError(f"expected two process samples, found {len(samples)}")
    (start, before), (end, after) = samples
    seconds = end - start
    if seconds <= 0:
        raise ValueError("no time passed between the two process samples")
    grown = []
    for pid, (user, rss, args) in after.items():
        old = before.get(pid)
        if old is None or old[2] != args:
            continue
        if len(args) > ARGS_MAX_CHARS:
            args = args[: ARGS_MAX_CHARS - 3] + "..."
        grown.append(MemoryGrowth(pid, user, old[1], rss, (rss - old[1]) / 1024 / seconds, args))
    grown.sort(key=lambda process: (-process.mb_per_s, -process.rss_after_kb, process.pid))
    return grown


def parse_oom_kills(text: str) -> list[OomKill]:
    """Find the OOM killer's kills in kernel log text (``dmesg`` or ``journalctl -k``).

    Lines must carry the kernel's seconds-since-boot stamp (``dmesg``'s default,
    ``journalctl -o short-monotonic``). Older kernels print "Kill process N ...
    or sacrifice child" before "Killed process N": only the latter counts.
    """
    kills = []
    for line in text.splitlines():
        match = _OOM_KILL.search(line)
        stamp = _KERNEL_TIME.match(line)
        if match is None or stamp is None:
            continue
        kills.append(
            OomKill(
                seconds=float(stamp[1]),
                pid=int(match[1]),
                command=match[2],
                anon_rss_kb=int(match[3] or 0),
                in_cgroup="Memory cgroup out of memory" in line,
                line=line.strip(),
            )
        )
    return kills


def memory_breakdown(host: Host) -> MemoryBreakdown:
    """Return free, available, cache and shared memory from /proc/meminfo."""
    return parse_meminfo_breakdown(host.read_text("/proc/meminfo"))


def swap_activity(host: Host, interval: float = 1.0) -> SwapActivity:
    """Sample /proc/vmstat twice, ``interval`` seconds apart: pages swapped in and out."""
    if interval <= 0:
        raise ValueError("interval must be a positive number of seconds")
    result = host.run("cat /proc/vmstat; sleep %s; cat /proc/vmstat", f"{interval:.3f}")
    return parse_swap_activity(result.check_output(host.name), interval)


def memory_growth(host: Host, interval: float = 1.0) -> list[MemoryGrowth]:
    """Sample every process's RSS twice, ``interval`` seconds apart; fastest growth first."""
    if interval <= 0:
        raise ValueError("interval must be a positive number of seconds")
    result = host.run(_GROWTH_COMMAND, f"{interval:.3f}")
    try:
        return parse_memory_growth(result.check_output(host.name))
    except ValueError as exc:
        raise RuntimeError(result.describe_failure(host.name, str(exc))) from None


@dataclasses.dataclass(frozen=True, slots=True)
class KernelLog:
    """The kernel log as one source printed it, or why no source could be read."""

    #: The command that printed it; empty when none could be read.
    source: str
    text: str
    #: One line per source tried and refused (``dmesg: ... Operation not permitted``).
    errors: tuple[str, ...]

    def oom_kills(self) -> list[OomKill]:
        """Return the OOM kills the log records, oldest first (``parse_oom_kills``)."""
        return parse_oom_kills(self.text)


def kernel_log(host: Host) -> KernelLog:
    """Read the kernel log: ``dmesg``, else ``journalctl -k`` for this boot.

    ``dmesg`` needs root where ``kernel.dmesg_restrict`` is 1; journalctl may
    have no journal at all (containers) and still exit 0 with "-- No entries
    --", which counts as unreadable too.
    """
    errors = []
    for command in ("dmesg", "journalctl -k -b -o short-monotonic --no-pager"):
        result = host.run(command)
        lines = [line for line in result.stdout.splitlines() if _KERNEL_TIME.match(line)]
        if result.succeeded and lines:
            return KernelLog(command, result.stdout, ())
        reason = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()[0]
        name = command.split()[0]
        errors.append(reason if reason.startswith(f"{name}:") else f"{command}: {reason}")
    return KernelLog("", "", tuple(errors))


class MemoryHelpers:
    """The memory helpers bound to one host: what the ``mem`` fixture gives a check."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def breakdown(self) -> MemoryBreakdown:
        """Return free, available and cache memory (``memory_breakdown``)."""
        return memory_breakdown(self.host)

    def swap_activity(self, interval: float = 1.0) -> SwapActivity:
        """Return pages swapped in and out per second over ``interval`` seconds."""
        return swap_activity(self.host, interval)

    def growth(self, interval: float = 1.0) -> list[MemoryGrowth]:
        """Return every process's RSS growth over ``interval`` seconds, fastest first."""
        return memory_growth(self.host, interval)

    def kernel_log(self) -> KernelLog:
        """Return the kernel log, or why it could not be read (``kernel_log``)."""
        return kernel_log(self.host)


@fixture(scope="host")
def mem(host: Host) -> MemoryHelpers:
    """Memory helpers (breakdown, swap activity, RSS growth, kernel log) on the current target."""
    return MemoryHelpers(host)
