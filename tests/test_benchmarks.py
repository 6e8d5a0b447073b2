"""The benchmarks run once at a tiny size, so that they cannot rot between releases.

No timing is asserted: the figures depend on the machine. What is asserted is
that every benchmark runs, produces its rows and writes the results page.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sshd import require_sshd

ROOT = Path(__file__).resolve().parent.parent

ROWS = (
    "per-check overhead",
    "cold start",
    "collection",
    "one SSH command",
    "fan-out",
    "memory",
    "log analysis",
    "log bytes over SSH",
)


def test_every_benchmark_runs_at_a_tiny_size(tmp_path):
    require_sshd()
    results = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--results", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    table = done.stdout.splitlines()
    for row in ROWS:
        assert any(line.startswith(row) for line in table), f"no {row!r} row:\n{done.stdout}"
    page = results.read_text()
    assert "| fan-out | runbook run, 2 hosts x 2 commands | paramiko+threads |" in page
    assert "- Machine: " in page and "cores" in page
    for row in ROWS:
        assert f"| {row} |" in page
    for peer in ("fabric", "parallel-ssh"):  # optional: a row, or a line saying it was skipped
        assert f"| {peer} |" in page or f"skipped {peer}: " in done.stdout, done.stdout


def test_only_runs_the_benchmarks_named():
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", "cold-start"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split("  ")[0] for line in done.stdout.splitlines()[2:] if line.strip()]
    assert rows == ["cold start", "cold start"], done.stdout


def test_an_unknown_benchmark_is_a_usage_error_that_lists_the_known_ones():
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--only", "fan-out,speed"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 4
    assert done.stderr.strip().splitlines() == [
        "unknown benchmark(s): speed; known: overhead, cold-start, collection, "
        "ssh-command, fan-out, memory, logs"
    ]
