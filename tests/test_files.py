"""Result files are private to their owner, and devices given as paths are left alone."""

from __future__ import annotations

import os
import stat

import pytest

from runbook.files import write_private

PROBE = '''
"""Probe."""
from runbook import check


@check
def ok(host):
    pass
'''


def test_a_report_file_is_0600_even_when_it_existed_wider(tmp_path):
    path = tmp_path / "reports" / "r.md"
    path.parent.mkdir()
    path.write_text("old")
    path.chmod(0o644)
    write_private(path, "new")
    assert path.read_text() == "new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.fixture
def null_device(tmp_path):
    """A character device like /dev/null (same major and minor), in a scratch folder."""
    if os.geteuid() != 0:
        pytest.skip("making a device node needs root")
    path = tmp_path / "null"
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    path.chmod(0o666)  # mknod applies the umask
    return path


def test_results_sent_to_a_device_leave_its_mode_alone(project, null_device, monkeypatch):
    """`--report /dev/null` must not make /dev/null 0600 (that breaks every other user)."""
    monkeypatch.setenv("RUNBOOK_AUDIT_LOG", str(null_device))
    project.runbook("probe", PROBE)
    device = str(null_device)
    result = project.invoke("run", "probe", "--report", device, "--json", device)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(null_device.stat().st_mode) == 0o666


@pytest.mark.parametrize("option", ["--report", "--json", "--junit-xml", "--record"])
def test_an_unwritable_result_path_is_a_usage_error_before_the_run(project, option):
    project.runbook("probe", PROBE)
    done = project.run("run", "probe", option, "/proc/no-such-folder/result")
    assert done.returncode == 4, done.stdout + done.stderr
    assert done.stderr.strip() == (
        f"runbook: error: {option} /proc/no-such-folder/result: cannot create its folder: "
        "No such file or directory"
    )
    assert "PASSED" not in done.stdout  # nothing ran: the results had nowhere to go
