"""What the CPU, load, process, uptime and memory helpers of ``Host`` return, and parsers.

``host.cpu_times()``, ``host.top_processes()``, ``host.memory()`` and the others run
ordinary read-only commands (``cat``, ``head``, ``ps``, ``sleep``) and hand what
they printed to the pure ``parse_*`` functions here, so the parsing can be tested
without any host. This module imports nothing that runs commands.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Literal

#: Longest command line kept in ``Process.args``; longer ones end with "...".
ARGS_MAX_CHARS = 200

#: How ``top_processes`` can order processes.
ProcessOrder = Literal["cpu", "memory", "threads"]

#: What ``Host.top_processes`` runs: ps first, so that every process line after it
#: comes from /proc; the two readings of /proc/stat mark where each sample starts.
TOP_COMMAND = (
    "ps -ww -e -o pid=,user:32=,pmem=,rss=,args=; "
    "cat /proc/stat /proc/[0-9]*/stat; sleep %s; cat /proc/stat /proc/[0-9]*/stat"
)
# comm may hold spaces and parentheses, so it runs to the *last* ") ".
_PID_STAT = re.compile(r"^(\d+) \((.*)\) (\S) (.*)$")
_PS_ROW = re.compile(r"^\s*(\d+)\s+(\S+)\s+([\d.]+)\s+(\d+) ?(.*)$")


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


# Memory: the figures of /proc/meminfo.


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
