"""The built-in high-memory runbook against real faults: a leak, a hog, page cache, an OOM kill.

This machine has no swap (``/proc/swaps`` is empty): the thrashing test turns a
128 MiB swap file on for a few seconds and runs a process that keeps writing 64 MiB
inside a memory cgroup limited to 24 MiB, so its pages move to and from swap
all the time; the swap is turned off again before the next test. An OOM kill is made for real inside
a memory cgroup limited to 64 MiB, so only the test's own child is killed. It
stays in the kernel log, so the other tests count OOM kills over a window of a
few seconds only, and the quiet-machine test expects what the log really holds.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path

import pytest
from resultdata import assert_passed_checks_say_what_they_measured
from resultdata import by_id
from resultdata import check_evidence
from resultdata import evidence_of
from resultdata import statuses
from runbook.plugins.memory import parse_oom_kills
from sshd import SSHServer
from sshd import unavailable

HYPOTHESES = ["memory-leak", "swap-thrashing", "oom-kills", "page-cache"]
# Kills older than this (3 s) do not count: earlier tests' OOM kills stay in the log.
FRESH_OOM = ("--param", "oom_window_minutes=0.05")
FAST = ("--param", "sample_seconds=1")
#: The kernel's name of a process this interpreter runs: ``python3``, or ``python`` from a venv.
COMM = re.escape(Path(sys.executable).name[:15])

GROWER = """
import time
chunks = []
print("ready", flush=True)
while len(chunks) < 120:  # 5 MiB every 0.1 s: about 50 MiB/s, up to 600 MiB
    chunks.append(b"x" * (5 << 20))
    time.sleep(0.1)
time.sleep(120)
"""
HOLDER = """
import time
data = b"x" * (1 << 30)  # written, so resident
print("ready", flush=True)
time.sleep(120)
"""


@pytest.fixture
def spawn() -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    """Start Python programs that print 'ready' when set up; kill them all at teardown."""
    started: list[subprocess.Popen[str]] = []

    def start(code: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True
        )
        started.append(process)
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def memory_cgroup(limit_bytes: int) -> Path:
    """Make a child memory cgroup (v1 or v2) of this process's own, limited to ``limit_bytes``."""
    if os.geteuid() != 0:
        unavailable("making a memory cgroup needs root")
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            parent, limit = Path("/sys/fs/cgroup/memory") / path.lstrip("/"), "limit_in_bytes"
            break
    else:
        parent, limit = Path("/sys/fs/cgroup") / line.split(":", 2)[2].lstrip("/"), "max"
    group = parent / f"runbook-oom-{os.getpid()}"
    try:
        group.mkdir()
        (group / f"memory.{limit}").write_text(str(limit_bytes))
    except OSError as exc:
        unavailable(f"cannot make a memory cgroup under {parent}: {exc}")
    return group


def test_a_process_that_keeps_growing_is_ruled_in_as_a_leak(project, spawn):
    grower = spawn(GROWER)
    result, data = project.run_json("high-memory", *FAST, *FRESH_OOM)
    assert (data["runbook"]["name"], data["runbook"]["title"]) == (
        "high-memory",
        "High memory usage",
    )
    found = statuses(data)
    assert list(found) == HYPOTHESES
    assert found["memory-leak"] == "ruled_in", by_id(data["checks"])
    [reason] = by_id(data["hypotheses"])["memory-leak"]["evidence"]
    match = re.search(rf"pid {grower.pid} \(.*\) grew (\d+) MiB in 1 s \(([\d.]+) MiB/s\)", reason)
    assert match, reason
    assert 20 <= int(match[1]) <= 80 and 20 <= float(match[2]) <= 80, reason
    assert str(grower.pid) in check_evidence(data, "no_process_keeps_growing")
    checks = by_id(data["checks"])
    assert checks["no_process_holds_most_memory"]["outcome"] == "passed"  # 600 MiB at most
    assert found["swap-thrashing"] == found["page-cache"] == found["oom-kills"] == "ruled_out"
    assert by_id(data["actions"])["restart_service"]["status"] == "planned"
    assert not [command for command in data["commands"] if command["blocked"]]
    assert result.exit_code == 1


def test_a_process_holding_a_share_of_memory_is_ruled_in(project, spawn):
    holder = spawn(HOLDER)
    result, data = project.run_json(
        "high-memory", *FAST, *FRESH_OOM, "--param", "process_memory_percent=3"
    )
    found = statuses(data)
    assert found["memory-leak"] == "ruled_in"
    [reason] = by_id(data["hypotheses"])["memory-leak"]["evidence"]
    match = re.search(rf"{COMM} \(pid {holder.pid}\) holds (\d+) MiB \((\d+)% of memory", reason)
    assert match, reason
    assert 1024 <= int(match[1]) < 1100, reason
    checks = by_id(data["checks"])
    assert checks["no_process_keeps_growing"]["outcome"] == "passed"  # it holds, not grows
    assert checks["no_process_holds_most_memory"]["outcome"] == "failed"
    assert found["swap-thrashing"] == found["page-cache"] == found["oom-kills"] == "ruled_out"
    assert result.exit_code == 1


def test_memory_full_of_page_cache_is_ruled_in_as_cache(project, tmp_path):
    # 24 GiB cannot be filled with cache in a test: read 512 MiB, then set the "low free"
    # line above what is free, and check that the cache is really what the check saw.
    big = tmp_path / "big.bin"
    block = b"x" * (1 << 20)
    with big.open("wb") as out:
        for _ in range(512):
            out.write(block)
    subprocess.run(f"cat {big} > /dev/null", shell=True, check=True)
    result, data = project.run_json(
        "high-memory", *FAST, *FRESH_OOM, "--param", "cache_free_percent=99.9"
    )
    found = statuses(data)
    assert found["page-cache"] == "ruled_in"
    [reason] = by_id(data["hypotheses"])["page-cache"]["evidence"]
    match = re.search(r"but (\d+)% is available: (\d+) MiB is page cache", reason)
    assert match, reason
    assert int(match[1]) >= 30 and int(match[2]) >= 512, reason
    assert "do not drop caches" in reason
    assert "reclaimable_cache" in check_evidence(data, "memory_is_really_used")
    assert found["memory-leak"] == found["swap-thrashing"] == "ruled_out"
    assert by_id(data["checks"])["memory_available"]["outcome"] == "passed"
    assert result.exit_code == 1


def test_a_real_oom_kill_in_a_memory_cgroup_is_ruled_in(project):
    group = memory_cgroup(64 << 20)
    try:
        victim = subprocess.Popen(
            [
                "sh",
                "-c",
                'echo $$ > "$1/cgroup.procs" && exec "$2" -c "$3"',
                "sh",
                str(group),
                sys.executable,
                "chunks = []\nwhile True: chunks.append(b'x' * (1 << 20))",
            ]
        )
        assert victim.wait(timeout=30) == -9  # SIGKILL from the OOM killer
    finally:
        deadline = time.monotonic() + 5
        while True:
            try:
                group.rmdir()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    result, data = project.run_json("high-memory", *FAST)
    found = statuses(data)
    assert found["oom-kills"] == "ruled_in", by_id(data["checks"])["no_recent_oom_kills"]
    [reason] = by_id(data["hypotheses"])["oom-kills"]["evidence"]
    assert re.search(rf"{COMM} \(pid {victim.pid}, \d+ MiB\) at its cgroup's memory limit", reason)
    assert str(victim.pid) in check_evidence(data, "no_recent_oom_kills")
    assert found["swap-thrashing"] == found["page-cache"] == "ruled_out"
    assert by_id(data["actions"])["restart_service"]["status"] == "planned"
    assert result.exit_code == 1


@pytest.fixture
def swap_file(tmp_path: Path) -> Iterator[Path]:
    """A 128 MiB swap file, on only while the test runs."""
    path = tmp_path / "swapfile"
    with open(path, "wb") as swap:
        for _ in range(128):
            swap.write(bytes(1 << 20))  # written, not sparse: swapon refuses holes
    path.chmod(0o600)
    subprocess.run(["mkswap", str(path)], check=True, capture_output=True)
    on = subprocess.run(["swapon", str(path)], capture_output=True, text=True)
    if on.returncode != 0:
        pytest.skip(f"swapon is not allowed here: {on.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["swapoff", str(path)], check=True, capture_output=True)


THRASHER = """
import sys
data = bytearray(64 << 20)
print("ready", flush=True)
while True:  # touch every page, again and again: more than the cgroup may keep in memory
    for page in range(0, len(data), 4096):
        data[page] = (data[page] + 1) & 0xFF
"""


def test_pages_moving_to_and_from_swap_are_ruled_in_as_thrashing(project, swap_file):
    group = memory_cgroup(24 << 20)
    thrasher = subprocess.Popen(
        [
            "sh",
            "-c",
            'echo $$ > "$1/cgroup.procs" && exec "$2" -c "$3"',
            "sh",
            str(group),
            sys.executable,
            THRASHER,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert thrasher.stdout is not None and thrasher.stdout.readline().strip() == "ready"
        # Its RSS swings within the cgroup's 24 MiB as pages come and go: not a leak.
        leak = ("--param", "leak_mb_per_s=30")
        result, data = project.run_json("high-memory", *FAST, *FRESH_OOM, *leak)
    finally:
        thrasher.kill()
        thrasher.wait()
        if thrasher.stdout is not None:
            thrasher.stdout.close()
        group.rmdir()
    found = statuses(data)
    assert found["swap-thrashing"] == "ruled_in", by_id(data["checks"])["swap_is_quiet"]
    [reason] = by_id(data["hypotheses"])["swap-thrashing"]["evidence"]
    match = re.match(r"(\d+) pages/s move to and from swap \((\d+) in, (\d+) out; ", reason)
    assert match and int(match[1]) > 100 and int(match[2]) > 0 and int(match[3]) > 0, reason
    assert "of swap in use" in reason
    assert "swap_total_kb" in check_evidence(data, "swap_is_quiet")
    assert found["oom-kills"] == found["page-cache"] == "ruled_out"
    assert found["memory-leak"] != "ruled_in", by_id(data["hypotheses"])["memory-leak"]
    assert result.exit_code == 1


def test_a_quiet_machine_rules_nothing_in(project):
    # OOM kills of the last hour (the test above makes one) are really in the log.
    log = subprocess.run(["dmesg"], capture_output=True, text=True).stdout
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    recent = [kill for kill in parse_oom_kills(log) if kill.seconds >= uptime - 3600]
    result, data = project.run_json("high-memory", *FAST)
    found = statuses(data)
    assert found["memory-leak"] == found["page-cache"] == "ruled_out"
    assert found["swap-thrashing"] == "ruled_out"
    [reason] = by_id(data["hypotheses"])["swap-thrashing"]["evidence"]
    assert reason == "no swap is configured, so the machine cannot thrash"
    assert found["oom-kills"] == ("ruled_in" if recent else "ruled_out")
    assert by_id(data["checks"])["memory_available"]["outcome"] == "passed"
    assert not [command for command in data["commands"] if command["blocked"]]
    # What was measured, against which threshold, and about whom.
    assert re.fullmatch(
        r"\d+ MiB of \d+ MiB available \(\d+%\), threshold 10%",
        by_id(data["checks"])["memory_available"]["message"],
    )
    growing, largest = evidence_of(data, "memory-leak")
    assert re.fullmatch(
        r"fastest-growing process \S+ \(pid \d+\) -?\d+\.\d MiB/s over 1 s, "
        r"limit 2 MiB/s",
        growing,
    ), growing
    assert re.fullmatch(
        r"largest process .+ \(pid \d+\) holds \d+ MiB \(\d+% of memory\), threshold 50%",
        largest,
    ), largest
    [cache] = evidence_of(data, "page-cache")
    assert re.fullmatch(
        r"\d+% of memory is free \(threshold 10%\): memory does not look used|"
        r"only \d+% of memory is available \(threshold 30%\): it is used, not page cache",
        cache,
    ), cache
    assert_passed_checks_say_what_they_measured(data)
    if not recent:
        [oom] = evidence_of(data, "oom-kills")
        assert re.fullmatch(r"no OOM kill in the last 60 min \(.+\)", oom), oom
        assert {a["status"] for a in data["actions"]} == {"not_needed"}
        assert result.exit_code == 0, result.output


def test_high_memory_lints_and_dry_runs_cleanly(project):
    lint = project.run("lint", "high-memory")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    dry = project.run("run", "high-memory", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    for name in ("no_process_keeps_growing", "no_recent_oom_kills", "restart_service"):
        assert name in dry.stdout


def test_high_memory_over_ssh_sees_the_leak_and_says_why_oom_is_unknown(
    remote_project, sshd: SSHServer, spawn
):
    project = remote_project
    grower = spawn(GROWER)  # ps shows every user's processes to the login user
    done = project.run(
        "run", "high-memory", "-H", f"127.0.0.2:{sshd.port}", *FAST, "--json", "result.json"
    )
    data = json.loads((project.root / "result.json").read_text())
    assert data["hosts"][0]["status"] == "ok", done.stdout + done.stderr
    found = statuses(data)
    assert found["memory-leak"] == "ruled_in", done.stdout
    [reason] = by_id(data["hypotheses"])["memory-leak"]["evidence"]
    assert f"pid {grower.pid} (" in reason
    assert found["swap-thrashing"] == found["page-cache"] == "ruled_out"
    oom = by_id(data["checks"])["no_recent_oom_kills"]
    restricted = Path("/proc/sys/kernel/dmesg_restrict").read_text().strip() == "1"
    if restricted and not Path("/var/log/journal").exists():  # so on this machine
        assert found["oom-kills"] == "inconclusive", oom
        assert oom["message"].startswith("cannot read the kernel log (dmesg: ")
        assert "run as root" in oom["message"]
    assert not [command for command in data["commands"] if command["blocked"]]
    assert done.returncode == 1
