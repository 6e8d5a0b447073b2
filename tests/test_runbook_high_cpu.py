"""The built-in high-cpu runbook, end to end through the real ``runbook`` command."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest
from resultdata import assert_passed_checks_say_what_they_measured
from resultdata import by_id
from runbook.library import high_cpu

from runbook.hosts import system
from runbook.hosts.host import Host
from runbook.hosts.local import LocalBackend
from runbook.outcomes import Skipped

HYPOTHESES = ["runaway-process", "too-many-processes", "io-wait", "cpu-steal"]


def runbook(*args, cwd):
    """Run ``python -m runbook`` in ``cwd`` and return the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "runbook", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
        timeout=120,
    )


def run_high_cpu(tmp_path, *params):
    """Run high-cpu read-only on this machine; return the process, the JSON result, the report."""
    result_path, report_path = tmp_path / "result.json", tmp_path / "report.md"
    done = runbook(
        "run",
        "high-cpu",
        "--json",
        str(result_path),
        "--report",
        str(report_path),
        "--param",
        "sample_seconds=0.3",
        *[arg for param in params for arg in ("--param", param)],
        cwd=tmp_path,
    )
    assert result_path.exists(), done.stdout + done.stderr
    return done, json.loads(result_path.read_text()), report_path.read_text()


def test_a_cpu_hog_is_ruled_in_as_a_runaway_process(tmp_path, cpu_hog):
    done, result, report = run_high_cpu(tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert (result["runbook"]["name"], result["runbook"]["title"]) == ("high-cpu", "High CPU usage")
    assert result["mode"] == "read-only" and result["exit_code"] == 1
    hypotheses = by_id(result["hypotheses"])
    runaway = hypotheses["runaway-process"]
    assert runaway["status"] == "ruled_in"
    assert runaway["hosts"] == {"local": "ruled_in"}
    named = [line for line in runaway["evidence"] if f"(pid {cpu_hog.pid}) uses" in line]
    assert named and "% CPU" in named[0], runaway["evidence"]
    check = by_id(result["checks"])["no_process_dominates"]
    assert check["outcome"] == "failed" and check["tests"] == ["runaway-process"]
    [table] = [item for item in check["evidence"] if item["title"].startswith("Top processes")]
    assert table["body"].splitlines()[2].split()[0] == str(cpu_hog.pid)  # first row
    assert f"(pid {cpu_hog.pid})" in report
    # Read-only: the mitigations are only planned, and nothing was refused.
    actions = by_id(result["actions"])
    assert actions["renice_runaway_process"]["status"] == "planned"
    assert actions["restart_service"]["status"] == "planned"
    assert not [command for command in result["commands"] if command["blocked"]]


def test_the_report_of_a_cpu_hog_reads_first_things_first_in_100_columns(tmp_path, cpu_hog):
    _, result, report = run_high_cpu(tmp_path)
    summary = report.split("\n## ")[0]  # everything before the first section
    assert max(len(line) for line in summary.splitlines()) <= 100, summary
    assert f"| local ({socket.gethostname()}, ok)" in summary  # the machine, not just "local"
    first = next(line for line in summary.splitlines() if line.startswith("- **"))
    assert first.startswith("- **runaway-process** is ruled in: ")
    assert f"(pid {cpu_hog.pid})" in summary
    # restart_service needs a service the operator did not name: say so, do not propose it bare.
    assert "restart_service (needs --param service=SERVICE)" in summary
    assert "service=(not given)" in summary
    restart = by_id(result["actions"])["restart_service"]
    assert "needs --param service=SERVICE" in restart["message"]
    assert "needs --param" not in by_id(result["actions"])["renice_runaway_process"]["message"]
    next_steps = report.split("## Next steps")[1]
    assert "restart_service (needs --param service=SERVICE)" in next_steps


def test_a_quiet_machine_rules_the_runaway_process_out(tmp_path):
    done, result, report = run_high_cpu(tmp_path)
    hypotheses = by_id(result["hypotheses"])
    assert list(hypotheses) == HYPOTHESES
    assert hypotheses["runaway-process"]["status"] == "ruled_out", hypotheses["runaway-process"]
    checks = by_id(result["checks"])
    assert checks["cpu_below_threshold"]["outcome"] == "passed"  # the symptom check
    assert checks["cpu_below_threshold"]["tests"] == []
    # What was measured, against which threshold, and about whom.
    assert re.fullmatch(
        r"CPUs \d+% busy, threshold 90%; load \d+\.\d\d on \d+ CPUs",
        checks["cpu_below_threshold"]["message"],
    ), checks["cpu_below_threshold"]["message"]
    [busiest] = hypotheses["runaway-process"]["evidence"]
    assert re.fullmatch(r"busiest process .+ \(pid \d+\) \d+% CPU, limit 80%", busiest), busiest
    crowd = hypotheses["too-many-processes"]["evidence"]
    if hypotheses["too-many-processes"]["status"] == "ruled_out":
        assert re.fullmatch(r"\d+ threads in \d+ processes, limit 10000", crowd[1]), crowd
    assert_passed_checks_say_what_they_measured(result)
    # Every check ran its commands through the read-only guard and reached a verdict.
    assert {check["outcome"] for check in checks.values()} <= {"passed", "failed"}
    assert not [command for command in result["commands"] if command["blocked"]]
    ruled_in = [h for h in hypotheses.values() if h["status"] == "ruled_in"]
    assert done.returncode == (1 if ruled_in else 0), done.stdout + done.stderr
    assert {a["status"] for a in result["actions"]} <= {"not_needed", "planned"}
    assert "High CPU usage" in report


def test_high_cpu_lints_and_dry_runs_cleanly(tmp_path):
    lint = runbook("lint", "high-cpu", cwd=tmp_path)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    dry = runbook(
        "run", "high-cpu", "--dry-run", "--json", str(tmp_path / "plan.json"), cwd=tmp_path
    )
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "renice_runaway_process" in dry.stdout and "restart_service" in dry.stdout


def test_renice_action_lowers_the_priority_of_the_hog_only(cpu_hog):
    # Decorators mark, they do not wrap: the action is a plain function to call here.
    host = Host(LocalBackend())
    params = SimpleNamespace(process_cpu_percent=80.0)
    high_cpu.renice_runaway_process(host, params)
    with open(f"/proc/{cpu_hog.pid}/stat") as stat:
        assert stat.read().rpartition(")")[2].split()[16] == "10"  # nice
    with open("/proc/self/stat") as stat:
        assert stat.read().rpartition(")")[2].split()[16] == "0"
    with pytest.raises(Skipped, match="no process uses 1000% of a CPU"):
        high_cpu.renice_runaway_process(host, SimpleNamespace(process_cpu_percent=1000.0))


# A launcher forks workers, prints their pids and waits; the test kills its session.
CROWD = textwrap.dedent(
    """
    import os, sys, threading
    spinners, threads = int(sys.argv[1]), int(sys.argv[2])
    pids = []
    for _ in range(spinners):
        pid = os.fork()
        if pid == 0:
            os.nice(19)  # runnable all the time, yet the runbook itself still gets the CPUs
            while True:
                pass
        pids.append(pid)
    for _ in range(threads):
        threading.Thread(target=threading.Event().wait, daemon=True).start()
    print(*pids, flush=True)
    threading.Event().wait()
    """
)

WRITERS = textwrap.dedent(
    """
    import mmap, os, sys, time
    folder, writers = sys.argv[1], int(sys.argv[2])
    block, span = 1 << 20, 32 << 20
    try:
        os.close(os.open(os.path.join(folder, "probe"), os.O_WRONLY | os.O_CREAT | os.O_DIRECT))
    except OSError:
        print("no-direct-io", flush=True)
        time.sleep(3600)
    pids = []
    for number in range(writers):
        pid = os.fork()
        if pid == 0:
            path = os.path.join(folder, f"writer{number}")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_DIRECT)
            buffer = mmap.mmap(-1, block)  # page-aligned, as O_DIRECT needs
            offset = 0
            while True:  # the same 32 MiB over and over, each write waiting for the disk
                os.pwrite(fd, buffer, offset)
                offset = (offset + block) % span
        pids.append(pid)
    print(*pids, flush=True)
    time.sleep(3600)
    """
)


def launch(script, *args):
    """Start ``script`` in its own session; return the launcher, its line of output."""
    launcher = subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    return launcher, launcher.stdout.readline().strip()


def stop(launcher):
    """Kill the launcher's session (it and the workers it forked)."""
    try:
        os.killpg(launcher.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    launcher.wait()
    launcher.stdout.close()


@pytest.fixture
def crowd():
    """20 niced processes spinning at once (about 10% of a CPU each on 2 CPUs), and a
    parent with 64 idle threads."""
    launcher, line = launch(CROWD, 20, 64)
    try:
        spinners = [int(pid) for pid in line.split()]
        assert len(spinners) == 20, line
        yield SimpleNamespace(pid=launcher.pid, spinners=spinners)
    finally:
        stop(launcher)


@pytest.fixture
def disk_writers(tmp_path):
    """Six processes writing to disk with O_DIRECT: each waits for the disk (state D)."""
    folder = tmp_path / "io"
    folder.mkdir()
    launcher, line = launch(WRITERS, folder, 6)
    try:
        if line == "no-direct-io":
            pytest.skip(f"{folder} does not support O_DIRECT, so writes never wait for a disk")
        writers = [int(pid) for pid in line.split()]
        assert len(writers) == 6, line
        yield writers
    finally:
        stop(launcher)


def test_a_crowd_of_runnable_processes_is_ruled_in_as_too_many(tmp_path, crowd):
    done, result, report = run_high_cpu(
        tmp_path, "max_runnable_per_cpu=2", "max_threads=1", "process_cpu_percent=80"
    )
    assert done.returncode == 1, done.stdout + done.stderr
    hypotheses = by_id(result["hypotheses"])
    crowded = hypotheses["too-many-processes"]
    assert crowded["status"] == "ruled_in", crowded
    checks = by_id(result["checks"])
    # The run queue: 20 spinners are runnable at once, far above 2 per CPU.
    run_queue = checks["run_queue_is_short"]
    assert run_queue["outcome"] == "failed" and run_queue["tests"] == ["too-many-processes"]
    [message] = [line for line in crowded["evidence"] if "threads are runnable" in line]
    assert int(message.split()[0]) >= 20, message
    # ... and it names who is runnable: the crowd's spinners.
    assert any(f"(pid {pid})" in message for pid in crowd.spinners), message
    # The thread count names the process that holds the threads: the crowd's parent.
    named = [line for line in crowded["evidence"] if f"(pid {crowd.pid}) has 65" in line]
    assert named, crowded["evidence"]
    assert f"(pid {crowd.pid})" in report
    # No single process of the crowd is blamed as a runaway: each gets a sliver of a CPU.
    runaway = hypotheses["runaway-process"]
    blamed = " ".join(line for line in runaway["evidence"] if " uses " in line)
    for pid in [crowd.pid, *crowd.spinners]:
        assert f"(pid {pid}) uses" not in blamed, runaway
    actions = by_id(result["actions"])
    assert actions["restart_service"]["status"] == "planned"  # mitigates the crowd too


def test_processes_waiting_for_the_disk_are_ruled_in_as_io_wait(tmp_path, disk_writers):
    done, result, report = run_high_cpu(tmp_path, "iowait_percent=5", "max_blocked_per_cpu=0.5")
    assert done.returncode == 1, done.stdout + done.stderr
    hypotheses = by_id(result["hypotheses"])
    io_wait = hypotheses["io-wait"]
    assert io_wait["status"] == "ruled_in", io_wait
    checks = by_id(result["checks"])
    assert checks["cpus_not_waiting_for_io"]["tests"] == ["io-wait"]
    assert checks["few_threads_blocked_on_io"]["tests"] == ["io-wait"]
    assert any("of their time waiting for I/O" in line for line in io_wait["evidence"])
    # The blocked threads' check names the processes in state D: the writers.
    [blocked] = [line for line in io_wait["evidence"] if "blocked on I/O" in line]
    assert any(f"(pid {pid})" in blocked for pid in disk_writers), blocked
    assert checks["few_threads_blocked_on_io"]["outcome"] == "failed"
    # The writers wait: they use little CPU, so none of them is a runaway.
    runaway = hypotheses["runaway-process"]
    for pid in disk_writers:
        assert f"(pid {pid})" not in " ".join(runaway["evidence"]), runaway
    assert "io-wait" in report


# /proc/stat "cpu" lines, two readings: between them 1000 ticks pass, 140 of them stolen.
STOLEN = """\
cpu  1000 0 500 8000 100 0 0 40 0 0
cpu  1100 0 550 8700 110 0 0 180 0 0
"""
NOT_STOLEN = """\
cpu  1000 0 500 8000 100 0 0 40 0 0
cpu  1400 0 600 8470 110 0 0 60 0 0
"""


def canned_host(proc_stat):
    """A host whose ``cpu_times`` reads canned /proc/stat text through ``runbook.hosts.system``."""

    def cpu_times(interval):
        return system.CpuTimes.from_counters(*system.parse_proc_stat(proc_stat))

    return SimpleNamespace(cpu_times=cpu_times)


def test_cpu_steal_is_ruled_in_from_steal_ticks_in_proc_stat():
    # Steal cannot be produced on demand (the hypervisor decides): canned readings.
    times = system.CpuTimes.from_counters(*system.parse_proc_stat(STOLEN))
    assert (times.steal, times.user, times.idle) == (14.0, 10.0, 70.0)
    params = SimpleNamespace(sample_seconds=0.3, steal_percent=10.0)
    with pytest.raises(AssertionError, match=r"hypervisor takes 14% of CPU time \(steal"):
        high_cpu.hypervisor_not_stealing(canned_host(STOLEN), params)
    high_cpu.hypervisor_not_stealing(canned_host(NOT_STOLEN), params)  # 2%: ruled out
    with pytest.raises(AssertionError, match="takes 2% of CPU time"):
        high_cpu.hypervisor_not_stealing(
            canned_host(NOT_STOLEN), SimpleNamespace(sample_seconds=0.3, steal_percent=1.0)
        )
