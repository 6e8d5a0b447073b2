"""The built-in disk-full runbook against real faults: full, inode-less and busy filesystems.

Each fault lives on its own small tmpfs, mounted for the test under a folder of
/tmp that every user may enter (the SSH test logs in as ``runbook-ssh``) and
unmounted at teardown, so the verdicts do not depend on this machine's disks.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path

import pytest
from resultdata import assert_passed_checks_say_what_they_measured
from resultdata import by_id
from resultdata import check_evidence
from resultdata import evidence_of
from resultdata import statuses
from sshd import USER
from sshd import SSHServer
from sshd import unavailable

SYSTEM_PYTHON = "/usr/bin/python3"
HYPOTHESES = ["filesystem-full", "inodes-exhausted", "huge-files", "deleted-but-open"]

HOLDER = """
import os, sys, time
path, size = sys.argv[1], int(sys.argv[2])
held = open(path, "wb")
held.write(b"x" * size)  # real bytes: a sparse file would hold no space
held.flush()
os.unlink(path)
print("ready", flush=True)
time.sleep(120)
"""


@pytest.fixture
def scratch() -> Iterator[Callable[..., Path]]:
    """Mount small tmpfs filesystems (``scratch(size="4m", nr_inodes=2000)``); unmount them."""
    mounted: list[Path] = []

    def mount(size: str = "16m", nr_inodes: int = 2000) -> Path:
        if os.geteuid() != 0 or shutil.which("mount") is None:
            unavailable("mounting a scratch tmpfs needs root and mount(8)")
        # mkdtemp makes a 0700 folder; others (the SSH user) must be able to enter it.
        folder = Path(tempfile.mkdtemp(prefix="disk-full-", dir="/tmp"))
        folder.chmod(0o755)
        options = f"size={size},nr_inodes={nr_inodes},mode=1777"
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            folder.rmdir()
            unavailable(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", str(folder)], check=True)
        folder.rmdir()


@pytest.fixture
def holder() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start processes that write a file, delete it and keep it open; kill them at teardown."""
    started: list[subprocess.Popen[str]] = []

    def start(path: Path, size: int, user: str | None = None) -> subprocess.Popen[str]:
        python = sys.executable
        if user is not None:
            # This test's interpreter may sit where other users cannot run it (/root).
            python = SYSTEM_PYTHON
            if not os.access(python, os.X_OK):
                unavailable(f"{python} is needed to run a process as {user}")
        process = subprocess.Popen(
            [python, "-c", HOLDER, str(path), str(size)],
            stdout=subprocess.PIPE,
            text=True,
            # uid and gid both: reading another process's descriptors needs both to match.
            user=user,
            group=None if user is None else pwd.getpwnam(user).pw_gid,
            extra_groups=None if user is None else [],
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


def fill(folder: Path, name: str = "fill.bin") -> int:
    """Write real bytes into ``folder/name`` until the filesystem refuses; return the size."""
    written = 0
    with open(folder / name, "wb", buffering=0) as out:
        try:
            while True:
                written += out.write(b"x" * 65536)
        except OSError as exc:
            assert exc.errno == 28, exc  # ENOSPC
    return written


def test_a_filesystem_filled_to_the_brim_is_ruled_in(project, scratch):
    disk = scratch(size="4m")
    fill(disk)
    result, data = project.run_json("disk-full", "--param", f"path={disk}")
    assert result.exit_code == 1, result.output
    assert (data["runbook"]["name"], data["runbook"]["title"]) == ("disk-full", "Disk full")
    found = statuses(data)
    assert list(found) == HYPOTHESES
    assert found["filesystem-full"] == "ruled_in"
    [reason] = by_id(data["hypotheses"])["filesystem-full"]["evidence"]
    assert reason.startswith(f"{disk} (tmpfs) is 100% full"), reason
    assert found["inodes-exhausted"] == "ruled_out"
    # One file fills the whole (small) filesystem: it takes most of the space, so it is huge.
    assert found["huge-files"] == "ruled_in"
    assert f"{disk}/fill.bin takes" in by_id(data["hypotheses"])["huge-files"]["evidence"][0]
    assert found["deleted-but-open"] != "ruled_in"
    checks = by_id(data["checks"])
    assert checks["filesystem_has_room"]["outcome"] == "failed"  # the symptom
    assert str(disk) in check_evidence(data, "filesystem_not_almost_full")
    actions = by_id(data["actions"])
    assert actions["truncate_log_file"]["status"] == "planned"
    assert actions["restart_service"]["status"] == "not_needed"
    assert not [command for command in data["commands"] if command["blocked"]]


def test_a_filesystem_out_of_inodes_is_ruled_in(project, scratch):
    disk = scratch(size="4m", nr_inodes=200)
    created = 0
    with pytest.raises(OSError, match="No space left"):
        while True:
            (disk / f"f{created}").touch()
            created += 1
    result, data = project.run_json("disk-full", "--param", f"path={disk}")
    found = statuses(data)
    assert found["inodes-exhausted"] == "ruled_in"
    [reason] = by_id(data["hypotheses"])["inodes-exhausted"]["evidence"]
    assert reason.startswith(f"{disk} (tmpfs) uses 100% of its inodes"), reason
    assert "0 free of 200" in reason
    assert found["filesystem-full"] == found["huge-files"] == "ruled_out"  # empty files
    assert result.exit_code == 1


def test_a_huge_log_file_is_ruled_in_and_named(project, scratch):
    disk = scratch(size="64m")
    logs = disk / "var log"  # a space in the path: quoting and parsing keep it whole
    logs.mkdir()
    (logs / "app.log").write_bytes(b"log line\n" * ((20 << 20) // 9))  # ~20 MiB of real bytes
    (logs / "sparse.img").open("wb").truncate(40 << 20)  # big, but takes no space
    (logs / "small.log").write_bytes(b"x" * 4096)
    result, data = project.run_json(
        "disk-full", "--param", f"path={disk}", "--param", "huge_file_mb=10"
    )
    found = statuses(data)
    assert found["huge-files"] == "ruled_in"
    [reason] = by_id(data["hypotheses"])["huge-files"]["evidence"]
    assert reason.startswith(f"{logs}/app.log takes 20.0 MiB (31% of {disk})"), reason
    assert "sparse.img" not in reason and "small.log" not in reason
    table = check_evidence(data, "no_huge_files")
    assert f"{logs}/app.log" in table and "root" in table
    assert found["filesystem-full"] == found["inodes-exhausted"] == "ruled_out"
    assert found["deleted-but-open"] != "ruled_in"
    assert by_id(data["actions"])["truncate_log_file"]["status"] == "planned"
    assert result.exit_code == 1


def test_a_deleted_file_held_open_is_ruled_in_with_its_process(project, scratch, holder):
    disk = scratch(size="64m")
    process = holder(disk / "rotated.log", 8 << 20)
    result, data = project.run_json(
        "disk-full", "--param", f"path={disk}", "--param", "deleted_open_mb=4"
    )
    found = statuses(data)
    assert found["deleted-but-open"] == "ruled_in", by_id(data["checks"])
    [reason] = by_id(data["hypotheses"])["deleted-but-open"]["evidence"]
    # The kernel names a process after the file it ran (the venv's python, or python3).
    command = Path(sys.executable).name[:15]
    assert f"{command} (pid {process.pid}) holds 8.0 MiB" in reason, reason
    assert f"e.g. {disk}/rotated.log" in reason
    table = check_evidence(data, "no_deleted_files_held_open")
    assert str(process.pid) in table and f"{disk}/rotated.log" in table
    # df counts the space, but no file has it any more.
    assert found["huge-files"] == found["inodes-exhausted"] == "ruled_out"
    assert found["filesystem-full"] == "ruled_out"
    assert by_id(data["actions"])["restart_service"]["status"] == "planned"
    assert result.exit_code == 1


def test_a_filesystem_with_room_rules_nothing_in(project, scratch):
    disk = scratch(size="16m")
    (disk / "data.bin").write_bytes(b"x" * (1 << 20))
    result, data = project.run_json("disk-full", "--param", f"path={disk}")
    found = statuses(data)
    assert found["filesystem-full"] == found["inodes-exhausted"] == "ruled_out"
    assert found["huge-files"] == "ruled_out"
    # Root may still be denied some processes' descriptors (a sandbox's pid 1): then the
    # check says so instead of ruling the hypothesis out.
    assert found["deleted-but-open"] in ("ruled_out", "inconclusive")
    checks = by_id(data["checks"])
    assert checks["filesystem_has_room"]["outcome"] == "passed"
    assert {check["outcome"] for check in checks.values()} <= {"passed", "inconclusive"}
    assert {a["status"] for a in data["actions"]} == {"not_needed"}
    assert not [command for command in data["commands"] if command["blocked"]]
    assert result.exit_code == 0, result.output
    # What was measured, against which threshold, and on which filesystem.
    assert re.fullmatch(
        rf"{re.escape(str(disk))} \d+% full \(threshold 90%\), "
        r"\d+% of inodes used \(threshold 90%\)",
        checks["filesystem_has_room"]["message"],
    ), checks["filesystem_has_room"]["message"]
    [full] = evidence_of(data, "filesystem-full")
    assert re.fullmatch(
        rf"{re.escape(str(disk))} \d+% full \(1\.\d MiB of 16\.0 MiB\), threshold 90%", full
    ), full
    [nodes] = evidence_of(data, "inodes-exhausted")
    assert re.fullmatch(
        rf"{re.escape(str(disk))} uses \d+% of its inodes \(\d+ of \d+\), threshold 90%", nodes
    ), nodes
    # Half of a 16 MiB filesystem is its floor for a huge file.
    assert evidence_of(data, "huge-files") == [
        f"no file on {disk} takes 8.0 MiB (the threshold) or more"
    ]
    if found["deleted-but-open"] == "ruled_out":
        [held] = evidence_of(data, "deleted-but-open")
        assert re.fullmatch(
            rf"deleted files still open hold \d+\.\d MiB on {re.escape(str(disk))}.*, "
            r"threshold 8\.0 MiB(; \d+ unreadable process(es)? could not hold that much)?",
            held,
        ), held
    assert_passed_checks_say_what_they_measured(data)


def test_disk_full_lints_and_dry_runs_cleanly(project):
    lint = project.run("lint", "disk-full")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    dry = project.run("run", "disk-full", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    for name in ("no_deleted_files_held_open", "truncate_log_file", "restart_service"):
        assert name in dry.stdout


def test_disk_full_over_ssh_names_the_remote_users_process(
    remote_project, sshd: SSHServer, scratch, holder
):
    project = remote_project
    disk = scratch(size="64m")
    # The login user sees its own processes' descriptors only: the holder runs as that user.
    process = holder(disk / "held.log", 8 << 20, user=USER)
    done = project.run(
        "run",
        "disk-full",
        "-H",
        f"127.0.0.2:{sshd.port}",
        "--param",
        f"path={disk}",
        "--param",
        "deleted_open_mb=4",
        "--json",
        "result.json",
    )
    data = json.loads((project.root / "result.json").read_text())
    assert data["hosts"][0]["status"] == "ok", done.stdout + done.stderr
    found = statuses(data)
    assert found["deleted-but-open"] == "ruled_in", done.stdout
    [reason] = by_id(data["hypotheses"])["deleted-but-open"]["evidence"]
    assert f"(pid {process.pid}) holds 8.0 MiB" in reason
    assert found["filesystem-full"] == found["inodes-exhausted"] == "ruled_out"
    assert not [command for command in data["commands"] if command["blocked"]]
    assert done.returncode == 1


def test_one_file_taking_most_of_a_small_filesystem_is_huge(project, scratch):
    # 63 MiB is under huge_file_mb (100), but it is nearly all of a 64 MiB filesystem.
    disk = scratch(size="64m")
    (disk / "dump.bin").write_bytes(b"x" * (63 << 20))
    result, data = project.run_json("disk-full", "--param", f"path={disk}")
    found = statuses(data)
    assert found["huge-files"] == "ruled_in", by_id(data["checks"])["no_huge_files"]
    [reason] = by_id(data["hypotheses"])["huge-files"]["evidence"]
    assert re.fullmatch(
        rf"{re.escape(str(disk))}/dump\.bin takes 63\.0 MiB \(9[7-9]% of {re.escape(str(disk))}\)"
        r" \(threshold 32\.0 MiB\)",
        reason,
    ), reason
    assert found["filesystem-full"] == "ruled_in"
    assert (data["severity"], data["severity_source"]) == ("P2", "runbook")
    assert result.exit_code == 1


def test_a_small_file_on_a_small_filesystem_is_not_huge(project, scratch):
    disk = scratch(size="64m")
    (disk / "data.bin").write_bytes(b"x" * (20 << 20))  # a third: not most of the space
    result, data = project.run_json("disk-full", "--param", f"path={disk}")
    assert statuses(data)["huge-files"] == "ruled_out"
    assert (data["severity"], result.exit_code) == (None, 0)


def test_space_held_by_a_deleted_file_decides_although_pid_1_is_unreadable(
    remote_project, sshd: SSHServer, scratch, holder
):
    # Over SSH as an ordinary user, root's processes (pid 1 first) cannot be read. The
    # user's own process holds 63 MiB of a 64 MiB filesystem: that decides, whatever
    # the unreadable processes hold. Default thresholds.
    disk = scratch(size="64m")
    process = holder(disk / "rotated.log", 63 << 20, user=USER)
    done = remote_project.run(
        "run", "disk-full", "-H", f"127.0.0.2:{sshd.port}", "--param", f"path={disk}",
        "--json", "result.json",
    )  # fmt: skip
    data = json.loads((remote_project.root / "result.json").read_text())
    assert data["hosts"][0]["status"] == "ok", done.stdout + done.stderr
    check = by_id(data["checks"])["no_deleted_files_held_open"]
    unreadable = {e["title"]: e["body"] for e in check["evidence"]}
    assert "/proc/1\n" in unreadable["Processes whose open files could not be read"] + "\n"
    assert statuses(data)["deleted-but-open"] == "ruled_in", check["message"]
    [reason] = by_id(data["hypotheses"])["deleted-but-open"]["evidence"]
    assert re.match(
        r"deleted files still open hold 63\.0 MiB \(9[7-9]% of .*; threshold 32\.0 MiB\): ", reason
    ), reason
    assert f"(pid {process.pid}) holds 63.0 MiB, e.g. {disk}/rotated.log" in reason
    assert done.returncode == 1
