"""The system plugin: parsers on literal text, one read-only command per helper, real use."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import textwrap
import time

import pytest
from runbook.plugins import system
from runbook.plugins.system import CpuCounters
from runbook.plugins.system import CpuTimes
from runbook.plugins.system import LoadAverage
from runbook.plugins.system import Memory
from runbook.plugins.system import ProcessCount
from runbook.plugins.system import TaskStat

from runbook.guard import check_command
from runbook.hosts import Host
from runbook.local import LocalBackend


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
    memory = system.parse_meminfo(MEMINFO)
    assert memory == Memory(8000000, 6000000, 2000000, 25.0, 2000000, 1500000)
    assert memory.swap_used_kb == 500000


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
    usage = system.parse_df(
        f"Filesystem 1024-blocks Used Available Capacity Mounted on\n{row}\n", "/x"
    )
    assert (usage.path, usage.filesystem, usage.mount) == ("/x", filesystem, mount)
    assert (usage.total_kb, usage.used_kb, usage.available_kb) == (total, used, available)


def test_parse_df_percent_leaves_out_reserved_blocks_like_df():
    usage = system.parse_df(DF_OUTPUT, "/")
    assert usage.used_percent == pytest.approx(100 * 61440000 / (61440000 + 35840000))
    with pytest.raises(ValueError, match="no filesystem line"):
        system.parse_df("Filesystem 1024-blocks Used Available Capacity Mounted on\n", "/")


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


class CannedBackend:
    """Answers each command with canned output picked by a substring; records commands."""

    name = "canned"
    uri = "canned://"

    def __init__(self, answers):
        self.answers = answers
        self.commands = []

    def execute(self, command, timeout, on_cancel):
        self.commands.append(command)
        text = command if isinstance(command, str) else shlex.join(command)
        for key, stdout, stderr, status in self.answers:
            if key in text:
                return stdout, stderr, status
        return "", f"{text}: unexpected command", 127

    def close(self):
        pass


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
    [command] = backend.commands
    if isinstance(command, str):
        check_command(command, None)
    else:
        check_command(shlex.join(command), list(command))


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


@pytest.fixture
def local():
    host = Host(LocalBackend())
    yield host
    host.close()


@pytest.fixture
def spawn():
    """Start Python programs; each prints 'ready' when set up. All are killed at the end."""
    started = []

    def start(code):
        process = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True
        )
        started.append(process)
        assert process.stdout.readline().strip() == "ready", "the helper process did not start"
        return process

    try:
        yield start
    finally:
        for process in started:
            process.kill()
            process.wait()
            process.stdout.close()


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
    memory = local.memory()
    assert memory.total_kb == pages
    assert 0 < memory.available_kb <= memory.total_kb
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

DF_INODES_OUTPUT = """\
Filesystem      Inodes  IUsed   IFree IUse% Mounted on
/dev/sda1      6553600 655360 5898240   10% /srv/data dir
"""
FIND_FILES_OUTPUT = (
    "1048576\t2048\troot\t/var/log/a.log\n"
    "4294967296\t0\troot\t/var/lib/sparse.img\n"  # big, but takes no space
    "2097152\t4096\twww-data\t/var/log/with\ttab and space.log\n"
    "not a find line\n"
    "1048576\t2048\troot\t/var/log/0.log\n"
)
FIND_FDS_OUTPUT = (
    "/proc/42/fd/3\t/var/log/app.log (deleted)\n"
    "/proc/42/fd/7\t/var/log/app.log.1 (deleted)\n"
    "/proc/43/fd/1\t/tmp/gone (deleted)\n"  # closed before stat: no stat line
    "/proc/44/fd/4\t/data/big (deleted)\n"
)
STAT_FDS_OUTPUT = (
    "2049\t1000\t8\t/proc/42/fd/3\n2049\t5000\t16\t/proc/42/fd/7\n64768\t9000\t24\t/proc/44/fd/4\n"
)
PS_COMM_OUTPUT = "   42 www-data  nginx\n   44 postgres  postgres: writer\n"


def test_parse_df_inodes():
    usage = system.parse_df_inodes(DF_INODES_OUTPUT, "/srv/data dir/x")
    assert (usage.mount, usage.total, usage.used, usage.free) == (
        "/srv/data dir",
        6553600,
        655360,
        5898240,
    )
    assert usage.used_percent == 10.0
    no_table = "Filesystem Inodes IUsed IFree IUse% Mounted on\n/dev/sdb1 0 0 0 - /btrfs\n"
    assert system.parse_df_inodes(no_table, "/btrfs").used_percent == 0.0
    with pytest.raises(ValueError, match="no filesystem line"):
        system.parse_df_inodes("df: /nope: No such file or directory\n", "/nope")


def test_parse_find_files_orders_by_space_taken_and_skips_sparse_and_small():
    files = system.parse_find_files(FIND_FILES_OUTPUT, limit=10, min_bytes=1 << 20)
    assert [(f.path, f.allocated_bytes, f.owner) for f in files] == [
        ("/var/log/with\ttab and space.log", 2 << 20, "www-data"),
        ("/var/log/0.log", 1 << 20, "root"),
        ("/var/log/a.log", 1 << 20, "root"),
    ]
    assert files[0].size_bytes == 2097152
    assert system.parse_find_files(FIND_FILES_OUTPUT, limit=1)[0].path.endswith("space.log")
    assert system.parse_find_files(FIND_FILES_OUTPUT, limit=5, min_bytes=3 << 20) == []


def test_parse_unreadable_keeps_permission_errors_only():
    stderr = (
        "find: '/proc/1/fd/0': Permission denied\n"
        "find: \u2018/root/private\u2019: Permission denied\n"
        "find: '/proc/999/fd': No such file or directory\n"
        "stat: cannot statx '/proc/1/fd/3': Permission denied\n"
    )
    assert system.parse_unreadable(stderr) == ("/proc/1/fd/0", "/root/private", "/proc/1/fd/3")


def test_parse_deleted_open_files_joins_find_stat_and_ps():
    files = system.parse_deleted_open_files(FIND_FDS_OUTPUT, STAT_FDS_OUTPUT, PS_COMM_OUTPUT)
    assert [(f.pid, f.fd, f.path, f.allocated_bytes, f.device) for f in files] == [
        (44, 4, "/data/big", 24 * 512, 64768),
        (42, 7, "/var/log/app.log.1", 16 * 512, 2049),
        (42, 3, "/var/log/app.log", 8 * 512, 2049),
    ]
    assert (files[0].user, files[0].command) == ("postgres", "postgres: writer")
    assert (files[1].user, files[1].command, files[1].size_bytes) == ("www-data", "nginx", 5000)
    # A process that ended before ps ran keeps its file, without a name.
    [orphan] = system.parse_deleted_open_files(FIND_FDS_OUTPUT, STAT_FDS_OUTPUT, "")[:1]
    assert (orphan.pid, orphan.command, orphan.user) == (44, "", "")


DISK_ANSWERS = [
    ("df -P -i", DF_INODES_OUTPUT, "", 0),
    ("find /srv", FIND_FILES_OUTPUT, "find: '/srv/private': Permission denied\n", 1),
    ("find /proc", FIND_FDS_OUTPUT, "find: '/proc/1/fd/0': Permission denied\n" * 2, 1),
    ("stat -L -c '%d\t%s\t%b\t%n' -- /var", "2049\t4096\t8\t/var\n", "", 0),
    ("stat -L -c", STAT_FDS_OUTPUT, "stat: cannot statx '/proc/43/fd/1': No such file\n", 1),
    ("ps -o", PS_COMM_OUTPUT, "", 0),
]


def test_disk_helpers_send_read_only_commands_and_quote_paths():
    backend = CannedBackend(DISK_ANSWERS)
    host = Host(backend)
    assert system.inode_usage(host, "/srv/data dir/x").used == 655360
    scan = system.largest_files(host, "/srv", limit=2, min_bytes=1 << 20)
    assert [f.path for f in scan.files] == ["/var/log/with\ttab and space.log", "/var/log/0.log"]
    assert scan.unreadable == ("/srv/private",)
    deleted = system.deleted_open_files(host, "/var")
    assert [(f.pid, f.fd) for f in deleted.files] == [(42, 7), (42, 3)]  # same device as /var
    assert deleted.unreadable == ("/proc/1",)
    assert len(system.deleted_open_files(host).files) == 3
    assert backend.commands[:2] == [
        "df -P -i '/srv/data dir/x'",
        ["find", "/srv", "-xdev", "-type", "f", "-size", "+1023k", "-printf", r"%s\t%b\t%u\t%p\n"],
    ]
    assert ["ps", "-o", "pid=,user:32=,comm=", "-p", "42,43,44"] in backend.commands
    for command in backend.commands:
        if isinstance(command, str):
            check_command(command, None)
        else:
            check_command(shlex.join(command), list(command))


def test_disk_helpers_fail_clearly_and_refuse_bad_arguments():
    host = Host(CannedBackend([("find", "", "find: '/nope': No such file or directory\n", 1)]))
    with pytest.raises(RuntimeError, match=r"failed on canned \(exit status 1\): find: '/nope'"):
        system.largest_files(host, "/nope")
    with pytest.raises(RuntimeError, match="find /proc"):
        system.deleted_open_files(host)
    with pytest.raises(ValueError, match="limit must be at least 1"):
        system.largest_files(host, "/", limit=0)
    with pytest.raises(ValueError, match="min_bytes must not be negative"):
        system.largest_files(host, "/", min_bytes=-1)


def test_disk_helpers_on_this_machine(local, tmp_path, spawn):
    statvfs = os.statvfs(tmp_path)
    assert system.inode_usage(local, str(tmp_path)).total == statvfs.f_files
    (tmp_path / "real.bin").write_bytes(b"x" * (3 << 20))
    with open(tmp_path / "sparse.bin", "wb") as sparse:
        sparse.truncate(50 << 20)
    (tmp_path / "small.bin").write_bytes(b"x" * 1000)
    scan = system.largest_files(local, str(tmp_path), limit=5, min_bytes=1 << 20)
    assert [f.path for f in scan.files] == [str(tmp_path / "real.bin")]
    assert scan.files[0].allocated_bytes >= 3 << 20 and scan.unreadable == ()
    held = tmp_path / "held.log"
    holder = spawn(
        f"""
        import os, time
        held = open({str(held)!r}, "wb")
        held.write(b"x" * (2 << 20))
        held.flush()
        os.unlink({str(held)!r})
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    scan = system.deleted_open_files(local, str(tmp_path))
    # The holder also inherited pytest's capture files (deleted, in /tmp): pick ours.
    found = [f for f in scan.files if f.pid == holder.pid and f.path == str(held)]
    assert [(f.path, f.size_bytes, f.user) for f in found] == [(str(held), 2 << 20, "root")]
    assert found[0].command.startswith("python") and found[0].allocated_bytes >= 2 << 20
    assert system.deleted_open_files(local, "/proc").files == ()  # another filesystem


# Memory helpers: breakdown, swap activity, RSS growth, OOM kills

MEMINFO_CACHE_FULL = """\
MemTotal:       16000000 kB
MemFree:          400000 kB
MemAvailable:   11000000 kB
Buffers:          300000 kB
Cached:         10500000 kB
Shmem:            500000 kB
SReclaimable:     200000 kB
SwapTotal:             0 kB
"""
VMSTAT = "nr_free_pages 100000\npswpin {}\npswpout {}\npgfault 123456\n"
PS_RSS = """\
 4242 alice    100000 python3 leak.py --serve
  777 bob        5000 sleep 1000
  888 carol      6000 old command
  999 dave       9000 shrinking
"""
PS_RSS_LATER = """\
 4242 alice    202400 python3 leak.py --serve
  777 bob        5000 sleep 1000
  888 carol      6000 new command
  999 dave       7976 shrinking
 5000 erin      90000 started later
"""
# Real kernel log shapes: a memcg kill (5.x), a global kill with the old "Kill process"
# line before it (4.x), and journalctl -k -o short-monotonic.
KERNEL_LOG = (
    "[    1.532678] EXT4-fs (vda): mounted filesystem r/w without journal.\n"
    "[ 6287.040909] oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,"
    "task=python3,pid=21096,uid=0\n"
    "[ 6287.040998] Memory cgroup out of memory: Killed process 21096 (python3) "
    "total-vm:75164kB, anon-rss:65152kB, file-rss:6616kB, shmem-rss:0kB, UID:0 "
    "pgtables:188kB oom_score_adj:0\n"
    "[ 7000.100000] Out of memory: Kill process 3141 (java) score 912 or sacrifice child\n"
    "[ 7000.100500] Killed process 3141 (java) total-vm:9000000kB, anon-rss:7340032kB, "
    "file-rss:0kB\n"
    "[ 7100.000000] web1 kernel: Out of memory: Killed process 77 (my (odd) app) total-vm:1kB\n"
)


def test_parse_meminfo_breakdown_counts_reclaimable_cache():
    memory = system.parse_meminfo_breakdown(MEMINFO_CACHE_FULL)
    assert (memory.total_kb, memory.free_kb, memory.available_kb) == (16000000, 400000, 11000000)
    # Buffers + Cached - Shmem (tmpfs cannot be dropped) + SReclaimable.
    assert memory.cache_kb == 300000 + 10500000 - 500000 + 200000
    assert memory.free_percent == pytest.approx(2.5)
    assert memory.available_percent == pytest.approx(68.75)
    assert system.parse_meminfo_breakdown(MEMINFO).cache_kb == 3200000  # no Shmem line
    with pytest.raises(ValueError, match="no MemTotal"):
        system.parse_meminfo_breakdown("MemFree: 1 kB\n")


def test_parse_swap_activity_is_pages_per_second():
    text = VMSTAT.format(1000, 5000) + VMSTAT.format(1600, 5800)
    activity = system.parse_swap_activity(text, 2.0)
    assert (activity.pages_in_per_s, activity.pages_out_per_s) == (300.0, 400.0)
    assert activity.pages_per_s == 700.0
    with pytest.raises(ValueError, match="two readings"):
        system.parse_swap_activity(VMSTAT.format(1, 2), 1.0)


def test_parse_memory_growth_orders_by_rate_and_skips_reused_pids():
    text = f"6000.00 100.00\n{PS_RSS}6002.00 101.00\n{PS_RSS_LATER}"
    grown = system.parse_memory_growth(text)
    assert [process.pid for process in grown] == [4242, 777, 999]  # 888 reused, 5000 new
    leak = grown[0]
    assert (leak.user, leak.rss_before_kb, leak.rss_after_kb) == ("alice", 100000, 202400)
    assert leak.mb_per_s == pytest.approx(50.0)  # 102400 KiB in 2 s
    assert leak.grown_kb == 102400 and leak.args == "python3 leak.py --serve"
    assert grown[-1].mb_per_s < 0
    with pytest.raises(ValueError, match="two process samples"):
        system.parse_memory_growth(PS_RSS)


def test_parse_oom_kills_reads_memcg_global_and_journal_lines():
    kills = system.parse_oom_kills(KERNEL_LOG)
    assert [(k.seconds, k.pid, k.command, k.anon_rss_kb, k.in_cgroup) for k in kills] == [
        (6287.040998, 21096, "python3", 65152, True),
        (7000.1005, 3141, "java", 7340032, False),
        (7100.0, 77, "my (odd) app", 0, False),
    ]
    assert system.parse_oom_kills("[    1.0] nothing to see\nKilled process 1 (x)\n") == []


def test_memory_helpers_send_read_only_commands():
    answers = [
        ("/proc/meminfo", MEMINFO_CACHE_FULL, "", 0),
        ("/proc/vmstat", VMSTAT.format(0, 0) + VMSTAT.format(10, 20), "", 0),
        ("ps -ww -e -o pid=,user:32=,rss=", f"1.00 0\n{PS_RSS}3.00 0\n{PS_RSS_LATER}", "", 0),
    ]
    backend = CannedBackend(answers)
    mem = system.MemoryHelpers(Host(backend))
    assert mem.breakdown().free_kb == 400000
    assert mem.swap_activity(0.5).pages_per_s == 60.0
    assert mem.growth(0.5)[0].pid == 4242
    assert len(backend.commands) == 3
    for command in backend.commands:
        if isinstance(command, str):
            check_command(command, None)
        else:
            check_command(shlex.join(command), list(command))
    assert "sleep 0.500" in backend.commands[1]
    with pytest.raises(ValueError, match="interval must be a positive"):
        mem.growth(0)


def test_kernel_log_falls_back_to_journalctl_then_says_why_it_cannot():
    dmesg_denied = ("dmesg", "", "dmesg: read kernel buffer failed: Operation not permitted\n", 1)
    journal = ("journalctl -k", KERNEL_LOG, "", 0)
    log = system.kernel_log(Host(CannedBackend([dmesg_denied, journal])))
    assert log.source.startswith("journalctl -k -b -o short-monotonic")
    assert [kill.pid for kill in log.oom_kills()] == [21096, 3141, 77]
    empty = ("journalctl -k", "-- No entries --\n", "No journal files were found.\n", 0)
    backend = CannedBackend([dmesg_denied, empty])
    log = system.kernel_log(Host(backend))
    assert (log.source, log.text) == ("", "")
    assert log.errors == (
        "dmesg: read kernel buffer failed: Operation not permitted",
        "journalctl -k -b -o short-monotonic --no-pager: No journal files were found.",
    )
    for command in backend.commands:
        check_command(command, None)


def test_memory_helpers_on_this_machine(local, spawn):
    memory = system.memory_breakdown(local)
    assert 0 < memory.free_kb <= memory.available_kb <= memory.total_kb
    assert system.swap_activity(local, 0.2).seconds == 0.2
    hog = spawn(
        """
        import time
        chunks = []
        print("ready", flush=True)
        while True:
            chunks.append(b"x" * (4 << 20))
            time.sleep(0.05)
        """
    )
    grown = system.memory_growth(local, 0.5)
    assert grown[0].pid == hog.pid and grown[0].mb_per_s > 20, grown[:3]
