"""The Host system helpers: parsers on literal text, one read-only command
per helper, real use."""

from __future__ import annotations

import os
import shutil
import time

import pytest
from canned import CannedBackend
from canned import assert_read_only

from runbook.hosts import filesystems
from runbook.hosts import system
from runbook.hosts.host import CommandResult
from runbook.hosts.host import Host
from runbook.hosts.system import CpuCounters
from runbook.hosts.system import CpuTimes
from runbook.hosts.system import LoadAverage
from runbook.hosts.system import Memory
from runbook.hosts.system import ProcessCount
from runbook.hosts.system import TaskStat


def stat_line(pid, comm, state="S", ticks=0, threads=1, start=100):
    """A /proc/[pid]/stat line with the given name, state, CPU ticks, threads and start."""
    return (
        f"{pid} ({comm}) {state} 1 {pid} {pid} 0 -1 4194304 120 0 0 0 {ticks} 0 0 0 20 0 "
        f"{threads} 0 {start} 12345678 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1"
    )


# Two CPUs; 200 ticks pass between the readings, so 100 ticks are one CPU for the sample.
PS_OUTPUT = """\
    1 root                              0.1 11000 /sbin/init splash
 4242 alice                            12.5 200000 python3 worker.py --busy
  777 bob                               0.0  5000 sleep 1000
  888 carol                             0.0  6000 reused
  999 dave                              0.0  7000 odd name
"""
FIRST_READING = "\n".join(
    [
        "cpu  1000 10 500 8000 100 0 20 0 0 0",
        "cpu0 500 5 250 4000 50 0 10 0 0 0",
        "cpu1 500 5 250 4000 50 0 10 0 0 0",
        "intr 123456 0 0 1",
        "ctxt 987654",
        "procs_running 3",
        "procs_blocked 0",
        stat_line(1, "init", ticks=10),
        stat_line(4242, "python3", "R", ticks=100, threads=4, start=500),
        stat_line(777, "sleep", ticks=1),
        stat_line(888, "old", ticks=5, start=600),
        stat_line(999, "my (odd) ) name", ticks=0, threads=50),
    ]
)
SECOND_READING = "\n".join(
    [
        "cpu  1150 10 540 8000 110 0 20 0 0 0",
        "cpu0 575 5 270 4000 55 0 10 0 0 0",
        "cpu1 575 5 270 4000 55 0 10 0 0 0",
        "procs_running 2",
        "procs_blocked 1",
        stat_line(1, "init", ticks=15),
        stat_line(4242, "python3", "R", ticks=200, threads=4, start=500),
        stat_line(888, "new", ticks=90, start=900),
        stat_line(999, "my (odd) ) name", "D", ticks=50, threads=50),
        stat_line(5000, "late", ticks=20),
    ]
)
TOP_OUTPUT = f"{PS_OUTPUT}{FIRST_READING}\n{SECOND_READING}\n"

MEMINFO = """\
MemTotal:        8000000 kB
MemFree:         1000000 kB
MemAvailable:    6000000 kB
Buffers:          200000 kB
Cached:          3000000 kB
SwapTotal:       2000000 kB
SwapFree:        1500000 kB
HugePages_Total:       0
"""
DF_OUTPUT = """\
Filesystem     1024-blocks     Used Available Capacity Mounted on
/dev/sda1        102400000 61440000  35840000      64% /
"""


# Parsers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "cpu  1 2 3 4 5 6 7 8 9 10\ncpu0 1 2 3 4 5 6 7 8 9 10",
            [CpuCounters(1, 2, 3, 4, 5, 6, 7, 8)],
        ),
        ("cpu  10 0 20 300 4", [CpuCounters(10, 0, 20, 300, 4, 0, 0, 0)]),  # kernel 2.5
        (
            "cpu  1 0 0 1 0 0 0 0\nintr 5\ncpu  2 0 0 3 0 0 0 0\n",
            [CpuCounters(1, 0, 0, 1, 0, 0, 0, 0), CpuCounters(2, 0, 0, 3, 0, 0, 0, 0)],
        ),
        ("intr 1 2 3\nctxt 4", []),
    ],
)
def test_parse_proc_stat(text, expected):
    assert system.parse_proc_stat(text) == expected


def test_cpu_times_are_shares_of_the_ticks_between_readings():
    before = CpuCounters(100, 0, 50, 1000, 10, 0, 0, 5)
    after = CpuCounters(160, 0, 70, 1100, 30, 0, 0, 5)  # 200 ticks: 60 + 20 + 100 + 20
    times = CpuTimes.from_counters(before, after)
    assert (times.user, times.system, times.idle, times.iowait) == (30.0, 10.0, 50.0, 10.0)
    assert times.steal == 0.0
    assert times.busy == 40.0  # 100 - idle - iowait


def test_cpu_times_clamp_counters_that_step_backwards():
    times = CpuTimes.from_counters(
        CpuCounters(0, 0, 0, 0, 50, 0, 0, 0), CpuCounters(10, 0, 0, 10, 40, 0, 0, 0)
    )
    assert (times.user, times.idle, times.iowait) == (50.0, 50.0, 0.0)


def test_cpu_times_need_time_to_pass():
    same = CpuCounters(1, 2, 3, 4, 5, 6, 7, 8)
    with pytest.raises(ValueError, match="no CPU time passed"):
        CpuTimes.from_counters(same, same)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0\n", 1), ("0-3\n", 4), ("0-3,6,8-9\n", 7), ("0,2\n", 2), ("0-127", 128)],
)
def test_parse_cpu_list(text, expected):
    assert system.parse_cpu_list(text) == expected


@pytest.mark.parametrize("text", ["", "zero", "0-x"])
def test_parse_cpu_list_refuses_junk(text):
    with pytest.raises(ValueError, match="not a CPU list"):
        system.parse_cpu_list(text)


def test_parse_loadavg():
    assert system.parse_loadavg("0.52 1.58 12.05 3/613 12345\n") == LoadAverage(
        0.52, 1.58, 12.05, 3, 613
    )
    with pytest.raises(ValueError, match="not a /proc/loadavg line"):
        system.parse_loadavg("0.52 1.58\n")


def test_parse_meminfo():
    figures = system.parse_meminfo(MEMINFO)
    assert figures == Memory(8000000, 6000000, 2000000, 25.0, 2000000, 1500000)
    assert figures.swap_used_kb == 500000


def test_parse_meminfo_estimates_available_on_old_kernels():
    old = "\n".join(line for line in MEMINFO.splitlines() if "MemAvailable" not in line)
    assert system.parse_meminfo(old).available_kb == 1000000 + 200000 + 3000000
    with pytest.raises(ValueError, match="MemTotal"):
        system.parse_meminfo("MemFree: 10 kB\n")


@pytest.mark.parametrize(
    ("row", "filesystem", "mount", "total", "used", "available"),
    [
        (
            "/dev/sda1 102400000 61440000 35840000 64% /",
            "/dev/sda1",
            "/",
            102400000,
            61440000,
            35840000,
        ),
        ("tmpfs 1000 0 1000 0% /mnt/my data", "tmpfs", "/mnt/my data", 1000, 0, 1000),
        ("//nas/My Share 500 400 100 80% /mnt/nas", "//nas/My Share", "/mnt/nas", 500, 400, 100),
        ("proc 0 0 0 - /proc", "proc", "/proc", 0, 0, 0),
    ],
)
def test_parse_df(row, filesystem, mount, total, used, available):
    usage = filesystems.parse_df(
        f"Filesystem 1024-blocks Used Available Capacity Mounted on\n{row}\n", "/x"
    )
    assert (usage.path, usage.filesystem, usage.mount) == ("/x", filesystem, mount)
    assert (usage.total_kb, usage.used_kb, usage.available_kb) == (total, used, available)


def test_parse_df_percent_leaves_out_reserved_blocks_like_df():
    usage = filesystems.parse_df(DF_OUTPUT, "/")
    assert usage.used_percent == pytest.approx(100 * 61440000 / (61440000 + 35840000))
    with pytest.raises(ValueError, match="no filesystem line"):
        filesystems.parse_df("Filesystem 1024-blocks Used Available Capacity Mounted on\n", "/")


def test_parse_uptime():
    assert system.parse_uptime("12708.61 24983.77\n") == 12708.61
    with pytest.raises(ValueError, match="not a /proc/uptime line"):
        system.parse_uptime("")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "1 (process_api) S 0 0 0 0 -1 4194560 58637 2959988 0 1609 453 2379 9566 2583 20 0 "
            "13 0 24 41443328 2918 18446744073709551615 1 1 0 0 0 0 0 4096 1256 0 0 0 17 1 0 0",
            TaskStat(1, "process_api", "S", 453 + 2379, 13, 24),
        ),
        (stat_line(42, "tmux: server", "R", 7, 2, 99), TaskStat(42, "tmux: server", "R", 7, 2, 99)),
        (stat_line(43, "a) b (c", "D", 1, 1, 5), TaskStat(43, "a) b (c", "D", 1, 1, 5)),
        (stat_line(44, ")", "Z"), TaskStat(44, ")", "Z", 0, 1, 100)),
        ("cpu0 1 2 3 4 5 6 7 8", None),
        ("procs_running 3", None),
        ("45 (truncated", None),
    ],
)
def test_parse_pid_stat(line, expected):
    assert system.parse_pid_stat(line) == expected


def test_parse_process_count():
    count = system.parse_process_count(SECOND_READING)
    assert count == ProcessCount(processes=5, threads=1 + 4 + 1 + 50 + 1, running=2, blocked=1)


def test_parse_top_processes_by_cpu_is_percent_of_one_cpu():
    top = system.parse_top_processes(TOP_OUTPUT, "cpu", 10)
    # 777 ended and 888 was reused between the readings; 5000 started after ps ran.
    assert [(p.pid, p.cpu_percent) for p in top] == [(4242, 100.0), (999, 50.0), (1, 5.0)]
    worker = top[0]
    assert (worker.user, worker.memory_percent, worker.rss_kb) == ("alice", 12.5, 200000)
    assert (worker.threads, worker.state, worker.command) == (4, "R", "python3")
    assert worker.args == "python3 worker.py --busy"
    assert (top[1].command, top[1].state, top[1].args) == ("my (odd) ) name", "D", "odd name")


def test_parse_top_processes_by_memory_and_threads():
    by_memory = system.parse_top_processes(TOP_OUTPUT, "memory", 2)
    assert [p.pid for p in by_memory] == [4242, 1]
    by_threads = system.parse_top_processes(TOP_OUTPUT, "threads", 10)
    assert [p.pid for p in by_threads] == [999, 4242, 1]


def test_parse_top_processes_caps_rounding_and_cuts_long_args():
    long_args = "java " + "-Dx=y " * 100
    text = TOP_OUTPUT.replace("python3 worker.py --busy", long_args).replace(
        stat_line(4242, "python3", "R", ticks=200, threads=4, start=500),
        stat_line(4242, "python3", "R", ticks=900, threads=4, start=500),
    )
    worker = system.parse_top_processes(text, "cpu", 1)[0]
    assert worker.cpu_percent == 400.0  # no more than its four threads can use
    assert len(worker.args) == system.ARGS_MAX_CHARS and worker.args.endswith("...")


def test_parse_top_processes_refuses_bad_input():
    with pytest.raises(ValueError, match="cannot order processes by 'disk'"):
        system.parse_top_processes(TOP_OUTPUT, "disk", 10)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected two readings of /proc/stat, found 1"):
        system.parse_top_processes(f"{PS_OUTPUT}{FIRST_READING}\n", "cpu", 10)


# Helpers through a Host: one read-only command each, arguments quoted


ANSWERS = [
    ("ps -ww", TOP_OUTPUT, "cat: /proc/777/stat: No such file or directory\n", 1),
    ("head -n 1 /proc/stat", "cpu  0 0 0 0 0 0 0 0\ncpu  100 0 50 50 0 0 0 0\n", "", 0),
    ("cat /proc/stat /proc/[0-9]*/stat", SECOND_READING, "", 0),
    ("/sys/devices/system/cpu/online", "0-3\n", "", 0),
    ("/proc/loadavg", "0.50 0.40 0.30 2/300 999\n", "", 0),
    ("/proc/meminfo", MEMINFO, "", 0),
    ("/proc/uptime", "100.5 300.0\n", "", 0),
    ("df -P -k", DF_OUTPUT, "", 0),
]


@pytest.mark.parametrize(
    ("helper", "expected"),
    [
        (lambda host: host.cpu_times(0.2).busy, 75.0),
        (lambda host: host.cpu_percent(0.2), 75.0),
        (lambda host: host.cpu_count(), 4),
        (lambda host: host.load_average().runnable, 2),
        (lambda host: host.memory().used_percent, 25.0),
        (lambda host: host.disk_usage("/").mount, "/"),
        (lambda host: host.top_processes(by="cpu", limit=1)[0].pid, 4242),
        (lambda host: host.top_processes(by="memory", limit=5)[0].rss_kb, 200000),
        (lambda host: host.process_count().threads, 57),
        (lambda host: host.uptime(), 100.5),
    ],
)
def test_each_helper_sends_one_read_only_command(helper, expected):
    backend = CannedBackend(ANSWERS)
    assert helper(Host(backend)) == expected
    assert len(backend.commands) == 1
    assert_read_only(backend.commands)


def test_disk_usage_quotes_the_path():
    backend = CannedBackend(ANSWERS)
    usage = Host(backend).disk_usage("/srv/a b; rm -rf /")
    assert backend.commands == ["df -P -k '/srv/a b; rm -rf /'"]
    assert usage.path == "/srv/a b; rm -rf /"


def test_a_failing_command_names_the_host_and_the_error():
    backend = CannedBackend([("df", "", "df: /nope: No such file or directory\n", 1)])
    with pytest.raises(
        RuntimeError, match=r"failed on canned \(exit status 1\): df: /nope: No such"
    ):
        Host(backend).disk_usage("/nope")
    with pytest.raises(RuntimeError, match="expected two readings"):
        Host(CannedBackend([])).top_processes()


def test_helpers_refuse_bad_arguments():
    host = Host(CannedBackend(ANSWERS))
    with pytest.raises(ValueError, match="cannot order processes by 'io'"):
        host.top_processes(by="io")
    with pytest.raises(ValueError, match="interval must be a positive"):
        host.cpu_times(0)


# Real measurements on this machine


def test_cpu_times_on_this_machine(local):
    times = local.cpu_times(0.2)
    shares = (times.user, times.nice, times.system, times.idle, times.iowait)
    total = sum(shares) + times.irq + times.softirq + times.steal
    assert total == pytest.approx(100.0)
    assert 0.0 <= times.busy <= 100.0
    assert min(shares) >= 0.0


def test_counts_and_sizes_match_what_python_sees(local, tmp_path):
    assert local.cpu_count() == os.cpu_count()
    load = local.load_average()
    assert load.runnable >= 1 and load.total_tasks >= load.runnable
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 1024
    figures = local.memory()
    assert figures.total_kb == pages
    assert 0 < figures.available_kb <= figures.total_kb
    with open("/proc/uptime") as uptime:
        assert local.uptime() == pytest.approx(float(uptime.read().split()[0]), abs=5)
    folder = tmp_path / "dir with space"
    folder.mkdir()
    usage = local.disk_usage(str(folder))
    assert usage.total_kb == shutil.disk_usage(folder).total // 1024
    assert usage.path == str(folder)
    with pytest.raises(RuntimeError, match="No such file"):
        local.disk_usage(str(tmp_path / "missing"))


def test_a_busy_loop_tops_the_cpu_list(local, spawn):
    hog = spawn("print('ready', flush=True)\nwhile True: pass")
    top = local.top_processes(by="cpu", limit=5)
    assert top[0].pid == hog.pid, top
    assert top[0].cpu_percent > 50
    assert (top[0].state, top[0].threads) == ("R", 1)
    assert top[0].command.startswith("python") and "while True" in top[0].args


def test_a_memory_hog_tops_the_memory_list_and_its_cpu_is_sampled_now(local, spawn):
    hog = spawn(
        """
        import time
        data = b"x" * (200 << 20)  # written, so resident
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    top = local.top_processes(by="memory", limit=3)
    assert top[0].pid == hog.pid, top
    assert top[0].rss_kb >= 200 << 10
    assert top[0].memory_percent > 0
    # Allocating took most of its short life: ps would show a high lifetime average.
    assert top[0].cpu_percent < 20


def test_process_count_sees_threads(local, spawn):
    before = local.process_count()
    hog = spawn(
        """
        import threading, time
        stop = threading.Event()
        for _ in range(200):
            threading.Thread(target=stop.wait, daemon=True).start()
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    after = local.process_count()
    assert after.threads - before.threads >= 150  # other processes may come and go
    assert after.processes >= 1 and after.running >= 1 and after.blocked >= 0
    started = time.perf_counter()
    top = local.top_processes(by="threads", limit=1)
    assert (top[0].pid, top[0].threads) == (hog.pid, 201)
    assert time.perf_counter() - started < 5


# Disk helpers: inodes, largest files, deleted files held open


def test_check_output_returns_stdout_or_says_what_failed_where():
    ok = CommandResult("uptime", "up 2 days\n", "", 0, 0.01)
    assert ok.check_output("web1") == "up 2 days\n"
    failed = CommandResult("df -P -k /nope", "", "df: warning\ndf: /nope: No such file\n", 1, 0.0)
    with pytest.raises(RuntimeError) as raised:
        failed.check_output("web1")
    assert str(raised.value) == (
        "'df -P -k /nope' failed on web1 (exit status 1): df: /nope: No such file"
    )
    assert (
        failed.describe_failure()
        == "'df -P -k /nope' failed (exit status 1): df: /nope: No such file"
    )
    long = CommandResult("x" * 200, "", "", 2, 0.0)
    assert long.describe_failure("h", "no output") == (
        f"'{'x' * 117}...' failed on h (exit status 2); no output"
    )
