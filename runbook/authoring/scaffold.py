"""``runbook new``: scaffold a runbook and a test for it."""

from __future__ import annotations

import re
from pathlib import Path

from runbook.outcomes import UsageError

_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")

RUNBOOK_TEMPLATE = '''"""{title}.

Symptoms: describe what the on-call engineer sees (alerts, errors, dashboards).
"""
from runbook import action, check, evidence, hypothesis

PARAMS = {{"load_per_cpu": 4.0, "path": "/"}}
TAGS = ["custom"]

overloaded = hypothesis("overloaded", "The host has more runnable work than CPUs")
disk_full = hypothesis("disk-full", "The filesystem holding `path` is almost full")


@check
def host_answers(host):
    """Symptom check: the host runs a command at all."""
    result = host.run("uptime")
    evidence("uptime", result)
    assert result.succeeded, f"uptime failed: {{result.stderr.strip()}}"


@check(tests=overloaded)
def load_is_reasonable(host, params):
    """Rule `overloaded` out when the 1-minute load per CPU is below the threshold."""
    load = host.load_average()
    per_cpu = load.one / host.cpu_count()
    evidence("Load average", [load])
    assert per_cpu < params.load_per_cpu, f"load {{load.one:.1f}} is {{per_cpu:.1f}} per CPU"


@check(tests=disk_full)
def disk_has_room(host, params):
    """Rule `disk-full` out when the filesystem is less than 90% used."""
    usage = host.disk_usage(params.path)
    evidence("Disk usage", [usage])
    assert usage.used_percent < 90, f"{{usage.mount}} is {{usage.used_percent:.0f}}% full"


@action(mitigates=disk_full)
def show_largest_directories(host, params):
    """Mitigation placeholder: replace with the real fix (it runs only with --execute)."""
    host.run("du -x -h -d 1 %s", params.path)
'''

TEST_TEMPLATE = '''"""Tests for the {name} runbook: it loads, lints and runs read-only here."""
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def runbook(*args, cwd):
    env = {{**os.environ, "RUNBOOK_PATH": str(HERE)}}
    return subprocess.run(
        [sys.executable, "-m", "runbook", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_{stem}_lints_clean():
    result = runbook("lint", "{name}", cwd=HERE.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_{stem}_runs_read_only(tmp_path):
    out = tmp_path / "result.json"
    report = tmp_path / "report.md"
    result = runbook("run", "{name}", "--json", str(out), "--report", str(report), cwd=HERE.parent)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    data = json.loads(out.read_text())
    assert data["mode"] == "read-only"
    assert {{h["id"] for h in data["hypotheses"]}} == {{"overloaded", "disk-full"}}
    assert all(a["status"] in ("planned", "not_needed") for a in data["actions"])


def canned(load="0.50", used_percent=40):
    """What the target answers to each command the checks send (runbook_runner's fake host)."""
    return {{
        "uptime": f" 10:00:00 up 12 days,  1 user,  load average: {{load}}, 0.40, 0.30\\n",
        "cat -- /proc/loadavg": f"{{load}} 0.40 0.30 2/180 4242\\n",
        "cat -- /sys/devices/system/cpu/online": "0-3\\n",
        "df -P -k /": (
            "Filesystem 1024-blocks Used Available Capacity Mounted on\\n"
            f"/dev/sda1 100 {{used_percent}} {{100 - used_percent}} {{used_percent}}% /\\n"
        ),
    }}


def test_{stem}_rules_each_hypothesis_in_on_canned_outputs(runbook_runner, monkeypatch):
    monkeypatch.setenv("RUNBOOK_PATH", str(HERE))
    healthy = runbook_runner.run("{name}", outputs=canned())
    healthy.assert_statuses({{"overloaded": "ruled_out", "disk-full": "ruled_out"}})
    busy = runbook_runner.run("{name}", outputs=canned(load="30.00"))
    busy.assert_statuses({{"overloaded": "ruled_in", "disk-full": "ruled_out"}})
    full = runbook_runner.run("{name}", outputs=canned(used_percent=97))
    full.assert_statuses({{"overloaded": "ruled_out", "disk-full": "ruled_in"}})
'''


def scaffold(name: str, directory: Path) -> list[Path]:
    """Write ``<dir>/<stem>.py`` and ``<dir>/test_<stem>.py``; return the paths written."""
    if not _NAME.match(name):
        raise UsageError(
            f"invalid runbook name {name!r}: use lowercase words joined by '-' "
            "(e.g. 'queue-backlog')"
        )
    stem = name.replace("-", "_")
    if stem.startswith("test_") or stem.endswith("_test") or stem == "runbookconf":
        raise UsageError(
            f"invalid runbook name {name!r}: files named test_*, *_test or runbookconf "
            "are not collected as runbooks"
        )
    title = name.replace("-", " ").capitalize()
    files = {
        directory / f"{stem}.py": RUNBOOK_TEMPLATE.format(title=title),
        directory / f"test_{stem}.py": TEST_TEMPLATE.format(name=name, stem=stem),
    }
    for path in files:
        if path.exists():
            raise UsageError(f"{path} already exists; not overwriting it")
    directory.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    return list(files)
