"""The SSH backend's long-lived shell: one per connection, no state between commands.

Against the real test sshd: the shell's own PID (``$$`` in a subshell is the
shell's) shows which shell ran a command.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sshd import SSHServer
from sshd import require_paramiko
from sshd import write_known_hosts

from runbook.hosts.host import Host
from runbook.outcomes import CommandTimeout
from runbook.ssh.backend import Address
from runbook.ssh.backend import SSHBackend
from runbook.ssh.backend import SSHOptions
from runbook.ssh.channel import Shell

require_paramiko()


@pytest.fixture
def host(sshd: SSHServer, ssh_keys: dict[str, Path], tmp_path: Path, monkeypatch) -> Host:
    """A Host on the test sshd, logged in with the good key."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    known_hosts = write_known_hosts(tmp_path / "known_hosts", sshd.host_key_line())
    (tmp_path / "ssh_config").write_text("")
    options = SSHOptions(
        known_hosts=known_hosts,
        ssh_config=tmp_path / "ssh_config",
        identity_file=ssh_keys["good"],
        connect_timeout=5.0,
    )
    backend = SSHBackend(
        Address.from_spec(f"ssh://{sshd.user}@{sshd.address}:{sshd.port}"), options
    )
    backend.connect()
    yield Host(backend)
    backend.close()


def test_commands_share_one_shell_and_leave_no_state_behind(host: Host):
    shell = host.run("echo $$; cd /; X=set; export Y=set").stdout
    pid, folder, variables = host.run('echo $$; pwd; echo "[$X$Y]"').stdout.split()
    assert pid == shell.strip()
    assert folder != "/" and variables == "[]"


def test_output_and_exit_status_come_back_exactly(host: Host):
    result = host.run("printf abc; printf err >&2; exit 7")
    assert (result.stdout, result.stderr, result.exit_status) == ("abc", "err", 7)
    assert host.run("printf '\\n\\n'").stdout == "\n\n"
    assert (host.run("true").stdout, host.run("true").stderr) == ("", "")


def test_a_command_that_reads_stdin_gets_nothing_and_the_next_one_runs(host: Host):
    assert host.run("cat; echo done", timeout=5).stdout == "done\n"
    assert host.run("echo next").stdout == "next\n"


def test_exit_and_exec_in_a_command_leave_the_shell_running(host: Host):
    shell = host.run("echo $$").stdout
    assert host.run("exit 4").exit_status == 4
    assert host.run("exec true").exit_status == 0
    assert host.run("echo $$").stdout == shell


def test_a_command_that_kills_the_shell_ends_killed_and_a_new_shell_takes_over(host: Host):
    shell = host.run("echo $$").stdout
    assert host.run("kill -9 $$").exit_status == -1
    assert host.run("echo $$").stdout not in ("", shell)


def test_after_a_timeout_a_fresh_shell_runs_the_next_command(host: Host):
    shell = host.run("echo $$").stdout
    started = time.monotonic()
    with pytest.raises(CommandTimeout):
        host.run("sleep 27.5", timeout=0.5)
    assert time.monotonic() - started < 3
    assert host.run("echo $$").stdout not in ("", shell)
    time.sleep(0.2)  # sshd delivers the signal asynchronously
    assert "sleep 27.5" not in host.run(["ps", "-eo", "args"]).stdout


def test_without_a_shell_every_command_gets_a_channel_of_its_own(host: Host, monkeypatch):
    monkeypatch.setattr(Shell, "start", classmethod(lambda cls, transport, timeout: None))
    pids = {host.run("echo $$").stdout for _ in range(3)}
    assert len(pids) == 3
    assert host.run("echo out; echo err >&2; exit 3").exit_status == 3


def test_a_background_job_cannot_write_into_the_next_command(host: Host):
    started = host.run("(sleep 0.3; echo late) & echo now")
    assert started.stdout == "now\nlate\n"  # its own channel waits for the job's output
    assert host.run("sleep 0.5; echo next").stdout == "next\n"
    assert host.run("echo a && echo b 2>&1 >&2").exit_status == 0  # no lone '&': the shell
