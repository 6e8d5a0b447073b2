"""The built-in high-cpu runbook, end to end through the real ``runbook`` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
from runbook.library import high_cpu

from runbook.hosts import Host
from runbook.local import LocalBackend
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


def run_high_cpu(tmp_path):
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
        cwd=tmp_path,
    )
    assert result_path.exists(), done.stdout + done.stderr
    return done, json.loads(result_path.read_text()), report_path.read_text()


def by_id(entries):
    return {entry["id"]: entry for entry in entries}


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


def test_a_quiet_machine_rules_the_runaway_process_out(tmp_path):
    done, result, report = run_high_cpu(tmp_path)
    hypotheses = by_id(result["hypotheses"])
    assert list(hypotheses) == HYPOTHESES
    assert hypotheses["runaway-process"]["status"] == "ruled_out", hypotheses["runaway-process"]
    checks = by_id(result["checks"])
    assert checks["cpu_below_threshold"]["outcome"] == "passed"  # the symptom check
    assert checks["cpu_below_threshold"]["tests"] == []
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
