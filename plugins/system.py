"""System helpers behind ``Host``: CPU, load, memory, disks, files and processes.

Every helper runs ordinary read-only commands (``cat``, ``head``, ``ps``,
``df``, ``find``, ``stat``, ``sleep``, ``dmesg``, ``journalctl``) through
``Host.run`` and parses what it printed, so the same code works on the local
machine, over SSH and against a replayed cassette. The parsing lives in pure
``parse_*`` functions that take that text, so it can be tested without any host.

The disk helpers that ``Host`` does not offer as methods (yet) are plain
functions of a host here, and the ``disk`` fixture binds them to the current
target for runbooks: ``disk.inode_usage(path)``, ``disk.largest_files(...)``,
``disk.deleted_open_files(path)``. The ``mem`` fixture does the same for the
memory helpers: ``mem.breakdown()``, ``mem.swap_activity(seconds)``,
``mem.growth(seconds)``, ``mem.kernel_log()``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING
from typing import Literal

from runbook import evidence
from runbook import fixture

if TYPE_CHECKING:
    from runbook.hosts import CommandResult
    from runbook.hosts import Host

#: Longest command line kept in ``Process.args``; longer ones end with "...".
ARGS_MAX_CHARS = 200

#: How ``top_processes`` can order processes.
ProcessOrder = Literal["cpu", "memory", "threads"]

# ps runs first so that every process line after it comes from /proc; the two
# readings of /proc/stat mark where each sample starts.
_TOP_COMMAND = (
    "ps -ww -e -o pid=,user:32=,pmem=,rss=,args=; "
    "cat /proc/stat /proc/[0-9]*/stat; sleep %s; cat /proc/stat /proc/[0-9]*/stat"
)
# comm may hold spaces and parentheses, so it runs to the *last* ") ".
_PID_STAT = re.compile(r"^(\d+) \((.*)\) (\S) (.*)$")
_PS_ROW = re.compile(r"^\s*(\d+)\s+(\S+)\s+([\d.]+)\s+(\d+) ?(.*)$")
# find -printf '%s\t%b\t%u\t%p\n': size, 512-byte blocks, owner, path.
_FIND_ROW = re.compile(r"^(\d+)\t(\d+)\t([^\t]*)\t(.+)$")
# find -printf '%p\t%l\n' on /proc/PID/fd/N: the descriptor and where it points.
_FD_ROW = re.compile(r"^/proc/(\d+)/fd/(\d+)\t(.*) \(deleted\)$")
# stat -L -c '%d\t%s\t%b\t%n': device, size, 512-byte blocks, name.
_STAT_ROW = re.compile(r"^(\d+)\t(\d+)\t(\d+)\t(.+)$")
# find: '/root/x': Permission denied / stat: cannot statx '/proc/1/fd/3': Permission denied
_DENIED = re.compile(r"^.*?['\u2018](.+)['\u2019]: Permission denied$", re.M)
_PS_COMM_ROW = re.compile(r"^\s*(\d+)\s+(\S+)\s?(.*)$")
_DF_ROW = re.compile(
    r"^(?P<fs>.*?)\s+(?P<total>\d+)\s+(?P<used>\d+)\s+(?P<avail>\d+)\s+(?:\d+%|-)\s+(?P<mount>/.*)$"
)


@dataclasses.dataclass(frozen=True, slots=True)
class CpuCounters:
    """Clock ticks since boot in each CPU state, over all CPUs (the ``cpu`` line of /proc/stat)."""

    user: int
    nice: int
    system: int
    idle: int
    iowait: int
    irq: int
    softirq: int
    steal: int

    @property
    def total(self) -> int:
        """All ticks counted (guest time is already part of user and nice)."""
        return sum(dataclasses.astuple(self))


@dataclasses.dataclass(frozen=True, slots=True)
class CpuTimes:
    """Share of CPU time (percent, all CPUs together) spent in each state during a sample."""

    #: 100 - idle - iowait: time the CPUs spent working, steal included.
    busy: float = dataclasses.field(init=False)
    user: float
    nice: float
    system: float
    idle: float
    iowait: float
    irq: float
    softirq: float
    steal: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "busy", max(0.0, 100.0 - self.idle - self.iowait))

    @classmethod
    def from_counters(cls, before: CpuCounters, after: CpuCounters) -> CpuTimes:
        """Return the share of each state between two readings of /proc/stat."""
        # iowait can step backwards on tickless kernels: a negative delta counts as 0.
        deltas = [
            max(0, new - old)
            for old, new in zip(
                dataclasses.astuple(before), dataclasses.astuple(after), strict=True
            )
        ]
        total = sum(deltas)
        if total == 0:
            raise ValueError("no CPU time passed between the two readings of /proc/stat")
        return cls(*(100.0 * delta / total for delta in deltas))


@dataclasses.dataclass(frozen=True, slots=True)
class LoadAverage:
    """The load averages and task counts of /proc/loadavg."""

    one: float
    five: float
    fifteen: float
    #: Threads runnable right now (running or waiting for a CPU).
    runnable: int
    #: Threads that exist right now.
    total_tasks: int


@dataclasses.dataclass(frozen=True, slots=True)
class Memory:
    """Memory and swap figures from /proc/meminfo, in KiB."""

    total_kb: int
    available_kb: int
    #: total - available: memory that cannot be reclaimed without swapping.
    used_kb: int
    used_percent: float
    swap_total_kb: int
    swap_free_kb: int

    @property
    def swap_used_kb(self) -> int:
        """Swap in use."""
        return self.swap_total_kb - self.swap_free_kb


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
class Process:
    """One process as ``top`` would show it."""

    pid: int
    user: str
    #: CPU used during the sample, in percent of one CPU (a busy loop is about 100).
    cpu_percent: float
    memory_percent: float
    rss_kb: int
    threads: int
    #: The kernel's one-letter state: R running, S sleeping, D waiting for I/O, Z zombie...
    state: str
    #: The process name (``comm``, at most 15 characters).
    command: str
    #: The full command line, cut at ``ARGS_MAX_CHARS``.
    args: str


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessCount:
    """How many processes and threads exist, and how many threads run or wait for I/O."""

    processes: int
    threads: int
    #: Threads runnable right now (procs_running of /proc/stat, the reading command included).
    running: int
    #: Threads in uninterruptible sleep right now, usually waiting for disk or network I/O.
    blocked: int


@dataclasses.dataclass(frozen=True, slots=True)
class TaskStat:
    """The fields of one /proc/[pid]/stat line that the helpers use."""

    pid: int
    command: str
    state: str
    #: utime + stime, in clock ticks.
    cpu_ticks: int
    threads: int
    #: Start time after boot, in clock ticks: tells a reused pid from the old process.
    start_ticks: int


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessSample:
    """One reading of /proc/stat and of every /proc/[pid]/stat."""

    cpu: CpuCounters
    cpus: int
    tasks: Mapping[int, TaskStat]


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


# Parsers: pure functions of command output.


def parse_proc_stat(text: str) -> list[CpuCounters]:
    """Return the counters of every ``cpu`` (all CPUs) line in ``text``, in order.

    ``text`` may hold several readings of /proc/stat one after the other, as a
    command that samples twice prints them. Fields missing on old kernels are 0.
    """
    readings = []
    for line in text.splitlines():
        if line.startswith("cpu "):
            values = [int(value) for value in line.split()[1:9]]
            readings.append(CpuCounters(*values, *[0] * (8 - len(values))))
    return readings


def parse_cpu_list(text: str) -> int:
    """Count the CPUs in a kernel CPU list such as ``0-3,6,8-9``."""
    count = 0
    for part in text.strip().split(","):
        first, _, last = part.partition("-")
        try:
            count += int(last or first) - int(first) + 1
        except ValueError:
            raise ValueError(f"not a CPU list: {text.strip()!r}") from None
    return count


def parse_loadavg(text: str) -> LoadAverage:
    """Parse /proc/loadavg (``0.52 0.58 0.59 2/613 12345``)."""
    try:
        one, five, fifteen, tasks = text.split()[:4]
        runnable, total = tasks.split("/")
        return LoadAverage(float(one), float(five), float(fifteen), int(runnable), int(total))
    except ValueError:
        raise ValueError(f"not a /proc/loadavg line: {text.strip()!r}") from None


def parse_meminfo(text: str) -> Memory:
    """Parse /proc/meminfo; kernels before 3.14 lack MemAvailable, so estimate it."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            values[name.strip()] = int(fields[0])
    if "MemTotal" not in values:
        raise ValueError("no MemTotal in /proc/meminfo")
    total = values["MemTotal"]
    available = values.get("MemAvailable")
    if available is None:
        available = sum(values.get(name, 0) for name in ("MemFree", "Buffers", "Cached"))
    used = total - available
    return Memory(
        total_kb=total,
        available_kb=available,
        used_kb=used,
        used_percent=100.0 * used / total if total else 0.0,
        swap_total_kb=values.get("SwapTotal", 0),
        swap_free_kb=values.get("SwapFree", 0),
    )


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


def parse_uptime(text: str) -> float:
    """Parse /proc/uptime: seconds since boot."""
    try:
        return float(text.split()[0])
    except (IndexError, ValueError):
        raise ValueError(f"not a /proc/uptime line: {text.strip()!r}") from None


def parse_pid_stat(line: str) -> TaskStat | None:
    """Parse one /proc/[pid]/stat line; None for anything else (other /proc/stat lines)."""
    match = _PID_STAT.match(line)
    if match is None:
        return None
    # Fields after the state, from ppid (field 4 in proc(5)) as 0: utime 10, stime 11,
    # num_threads 16, starttime 18.
    fields = match[4].split()
    if len(fields) < 19:
        return None
    return TaskStat(
        pid=int(match[1]),
        command=match[2],
        state=match[3],
        cpu_ticks=int(fields[10]) + int(fields[11]),
        threads=int(fields[16]),
        start_ticks=int(fields[18]),
    )


def parse_process_sample(text: str) -> ProcessSample:
    """Parse one reading of ``cat /proc/stat /proc/[0-9]*/stat``."""
    readings = parse_proc_stat(text)
    if not readings:
        raise ValueError("no cpu line from /proc/stat in the process sample")
    cpus = 0
    tasks: dict[int, TaskStat] = {}
    for line in text.splitlines():
        if re.match(r"cpu\d+ ", line):
            cpus += 1
        elif (task := parse_pid_stat(line)) is not None:
            tasks[task.pid] = task
    return ProcessSample(readings[0], max(cpus, 1), tasks)


def parse_process_count(text: str) -> ProcessCount:
    """Count processes, threads, running and blocked threads.

    ``text`` is the output of ``cat /proc/stat /proc/[0-9]*/stat``.
    """
    sample = parse_process_sample(text)
    counters: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("procs_running", "procs_blocked"):
            counters[name] = int(value)
    return ProcessCount(
        processes=len(sample.tasks),
        threads=sum(task.threads for task in sample.tasks.values()),
        running=int(counters.get("procs_running", 0)),
        blocked=int(counters.get("procs_blocked", 0)),
    )


def parse_top_processes(text: str, by: ProcessOrder = "cpu", limit: int = 10) -> list[Process]:
    """Build the process table from the output of the ``top_processes`` command.

    The text is ``ps`` output followed by two readings of /proc/stat and every
    /proc/[pid]/stat. CPU use is the difference between the two readings, in
    percent of one CPU. Processes missing from any part (they started or ended
    while the sample ran, or their pid was reused) are left out.
    """
    if by not in ("cpu", "memory", "threads"):
        raise ValueError(f"cannot order processes by {by!r}: use 'cpu', 'memory' or 'threads'")
    lines = text.splitlines()
    starts = [index for index, line in enumerate(lines) if line.startswith("cpu ")]
    if len(starts) != 2:
        raise ValueError(f"expected two readings of /proc/stat, found {len(starts)}")
    before = parse_process_sample("\n".join(lines[starts[0] : starts[1]]))
    after = parse_process_sample("\n".join(lines[starts[1] :]))
    ticks_per_cpu = (after.cpu.total - before.cpu.total) / after.cpus
    if ticks_per_cpu <= 0:
        raise ValueError("no CPU time passed between the two readings of /proc/stat")
    processes = []
    for line in lines[: starts[0]]:
        row = _PS_ROW.match(line)
        if row is None:
            continue
        pid = int(row[1])
        old, new = before.tasks.get(pid), after.tasks.get(pid)
        if old is None or new is None or old.start_ticks != new.start_ticks:
            continue
        args = row[5].strip()
        if len(args) > ARGS_MAX_CHARS:
            args = args[: ARGS_MAX_CHARS - 3] + "..."
        processes.append(
            Process(
                pid=pid,
                user=row[2],
                cpu_percent=_cpu_percent(old, new, ticks_per_cpu),
                memory_percent=float(row[3]),
                rss_kb=int(row[4]),
                threads=new.threads,
                state=new.state,
                command=new.command,
                args=args,
            )
        )
    processes.sort(key=lambda process: _order_key(process, by))
    return processes[:limit]


def _cpu_percent(old: TaskStat, new: TaskStat, ticks_per_cpu: float) -> float:
    # Tick counts are coarse (100 per second): cap the rounding error at what the
    # process's threads can use, so a busy loop reads 100%, never 102%.
    used = 100.0 * max(0, new.cpu_ticks - old.cpu_ticks) / ticks_per_cpu
    return min(used, 100.0 * max(new.threads, old.threads, 1))


def _order_key(process: Process, by: ProcessOrder) -> tuple[float, float, int]:
    first = {"cpu": process.cpu_percent, "memory": process.rss_kb, "threads": process.threads}
    second = process.rss_kb if by == "cpu" else process.cpu_percent
    return (-first[by], -second, process.pid)


# Helpers: one command on the host each.


def cpu_times(host: Host, interval: float = 0.5) -> CpuTimes:
    """Sample /proc/stat twice, ``interval`` seconds apart, in one command."""
    if interval <= 0:
        raise ValueError("interval must be a positive number of seconds")
    result = host.run("head -n 1 /proc/stat; sleep %s; head -n 1 /proc/stat", f"{interval:.3f}")
    readings = parse_proc_stat(_stdout(host, result))
    if len(readings) != 2:
        raise ValueError(f"expected two readings of /proc/stat, got {len(readings)}")
    return CpuTimes.from_counters(*readings)


def cpu_count(host: Host) -> int:
    """Return the number of online CPUs (what glibc's ``_NPROCESSORS_ONLN`` reports)."""
    return parse_cpu_list(host.read_text("/sys/devices/system/cpu/online"))


def load_average(host: Host) -> LoadAverage:
    """Return the load averages and task counts of /proc/loadavg."""
    return parse_loadavg(host.read_text("/proc/loadavg"))


def memory(host: Host) -> Memory:
    """Return memory and swap figures from /proc/meminfo."""
    return parse_meminfo(host.read_text("/proc/meminfo"))


def disk_usage(host: Host, path: str = "/") -> DiskUsage:
    """Return size and use of the filesystem holding ``path``."""
    return parse_df(_stdout(host, host.run("df -P -k %s", path)), path)


def inode_usage(host: Host, path: str = "/") -> InodeUsage:
    """Return how many inodes the filesystem holding ``path`` has and uses."""
    return parse_df_inodes(_stdout(host, host.run("df -P -i %s", path)), path)


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
        raise RuntimeError(_failure(host, result))
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
        raise RuntimeError(_failure(host, listing))
    device = None
    stat_text = ps_text = ""
    if path is not None:
        # stat fails for descriptors closed since find saw them; the others still print.
        stat_path = _stdout(host, host.run(["stat", "-L", "-c", "%d\t%s\t%b\t%n", "--", path]))
        device = int(stat_path.split("\t", 1)[0])
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

    def usage(self, path: str = "/") -> DiskUsage:
        """Return size and use of the filesystem holding ``path``."""
        return disk_usage(self.host, path)

    def inode_usage(self, path: str = "/") -> InodeUsage:
        """Return how many inodes the filesystem holding ``path`` has and uses."""
        return inode_usage(self.host, path)

    def largest_files(self, path: str = "/", limit: int = 10, min_bytes: int = 0) -> FileScan:
        """Find the ``limit`` files under ``path`` taking the most space (``largest_files``)."""
        return largest_files(self.host, path, limit, min_bytes)

    def deleted_open_files(self, path: str | None = None) -> DeletedFileScan:
        """Find deleted files still held open, on ``path``'s filesystem if given."""
        return deleted_open_files(self.host, path)


@fixture(scope="host")
def disk(host: Host) -> Disk:
    """Disk helpers (usage, inodes, largest files, deleted open files) on the current target."""
    return Disk(host)


def top_processes(
    host: Host, by: ProcessOrder = "cpu", limit: int = 10, interval: float = 0.5
) -> list[Process]:
    """Return the ``limit`` processes using the most CPU, memory (RSS) or threads.

    CPU use is measured now, over ``interval`` seconds, like ``top`` (not the
    lifetime average that ``ps`` prints), whatever the order.
    """
    if by not in ("cpu", "memory", "threads"):
        raise ValueError(f"cannot order processes by {by!r}: use 'cpu', 'memory' or 'threads'")
    if interval <= 0:
        raise ValueError("interval must be a positive number of seconds")
    # Not _stdout(): cat fails for processes that exit while it runs, which is fine.
    result = host.run(_TOP_COMMAND, f"{interval:.3f}")
    try:
        return parse_top_processes(result.stdout, by, limit)
    except ValueError as exc:
        raise RuntimeError(_failure(host, result, str(exc))) from None


def process_count(host: Host) -> ProcessCount:
    """Return how many processes and threads exist, and how many threads run or block."""
    # cat exits non-zero when a process ends while it runs; the rest is still good.
    result = host.run("cat /proc/stat /proc/[0-9]*/stat")
    try:
        return parse_process_count(result.stdout)
    except ValueError as exc:
        raise RuntimeError(_failure(host, result, str(exc))) from None


def uptime(host: Host) -> float:
    """Return seconds since the host booted."""
    return parse_uptime(host.read_text("/proc/uptime"))


def restart_service(host: Host, service: str) -> CommandResult:
    """Restart a systemd unit (an action's step), keep the result as evidence, raise on failure."""
    result = host.run("systemctl restart %s", service)
    evidence(f"systemctl restart {service}", result)
    if not result.succeeded:
        raise RuntimeError(f"restart of {service} failed: {result.stderr.strip()}")
    return result


def _stdout(host: Host, result: CommandResult) -> str:
    if not result.succeeded:
        raise RuntimeError(_failure(host, result))
    return result.stdout


def _failure(host: Host, result: CommandResult, detail: str = "") -> str:
    stderr = result.stderr.strip().splitlines()
    message = f"{result.command!r} failed on {host.name} (exit status {result.exit_status})"
    if stderr:
        message += f": {stderr[-1]}"
    return f"{message}; {detail}" if detail else message


# Memory helpers: what the high-memory runbook reads.

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
    return parse_swap_activity(_stdout(host, result), interval)


def memory_growth(host: Host, interval: float = 1.0) -> list[MemoryGrowth]:
    """Sample every process's RSS twice, ``interval`` seconds apart; fastest growth first."""
    if interval <= 0:
        raise ValueError("interval must be a positive number of seconds")
    result = host.run(_GROWTH_COMMAND, f"{interval:.3f}")
    try:
        return parse_memory_growth(_stdout(host, result))
    except ValueError as exc:
        raise RuntimeError(_failure(host, result, str(exc))) from None


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
