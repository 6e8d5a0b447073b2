"""The benchmarks run once at a tiny size, so that they cannot rot between releases."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sshd import require_sshd

ROOT = Path(__file__).resolve().parent.parent


def test_fanout_benchmark_runs_at_a_tiny_size():
    require_sshd()
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "fanout.py"),
            "--hosts",
            "2",
            "--commands",
            "2",
            "--repeat",
            "1",
            "--peers",
            "paramiko+threads",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {line.split()[0] for line in done.stdout.splitlines()[2:] if line.strip()}
    assert {"runbook", "paramiko+threads"} <= rows, done.stdout
    assert "fan-out: 2 hosts x 2 commands" in done.stdout
