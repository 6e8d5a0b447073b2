"""Runbooks over SSH through the real command line, against a real sshd (tests/sshd.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sshd import free_port

WHOAMI = '''
    """Who am I."""
    from runbook import check, evidence, hypothesis

    wrong_user = hypothesis("wrong-user", "Commands run as an unexpected user")

    @check(tests=wrong_user)
    def runs_as_the_login_user(host):
        user = host.run("id -un").stdout.strip()
        evidence("User", user)
        assert user == "runbook-ssh", f"ran as {user}"
        assert host.exists("/proc/loadavg")
        assert host.read_text("/proc/loadavg").count(" ") == 4
'''


@pytest.fixture
def remote(remote_project):
    """A project that trusts the test sshd (127.0.0.2 and .3), with the whoami runbook."""
    remote_project.runbook("whoami", WHOAMI)
    return remote_project


def test_an_inventory_group_runs_on_every_host_and_a_dead_one_is_recorded(remote, sshd):
    closed = free_port("127.0.0.1")
    remote.write(
        "hosts.ini",
        f"""
        [web]
        web1 ansible_host=127.0.0.2 ansible_port={sshd.port}
        web2 ansible_host=127.0.0.3 ansible_port={sshd.port}

        [broken]
        dead ansible_host=127.0.0.1 ansible_port={closed}

        [all_of_them:children]
        web
        broken
        """,
    )
    result, data = remote.run_json("whoami", "-i", "hosts.ini", "-H", "all_of_them")
    hosts = {h["name"]: (h["status"], h["uri"]) for h in data["hosts"]}
    assert hosts == {
        "web1": ("ok", f"ssh://runbook-ssh@127.0.0.2:{sshd.port}"),
        "web2": ("ok", f"ssh://runbook-ssh@127.0.0.3:{sshd.port}"),
        "dead": ("unreachable", f"ssh://runbook-ssh@127.0.0.1:{closed}"),
    }
    assert "connection refused" in next(h for h in data["hosts"] if h["name"] == "dead")["error"]
    checks = {c["host"]: c["outcome"] for c in data["checks"]}
    assert checks == {"web1": "passed", "web2": "passed"}
    assert data["hypotheses"][0]["hosts"] == {
        "web1": "ruled_out",
        "web2": "ruled_out",
        "dead": "untested",
    }
    assert result.exit_code == 1  # a target that could not be used is a finding
    assert "host dead: UNREACHABLE" in result.output


def test_unknown_host_key_is_refused_then_accepted_and_recorded(remote, sshd):
    remote.known_hosts.write_text("")
    target = f"127.0.0.2:{sshd.port}"
    result, data = remote.run_json("whoami", "-H", target)
    assert data["hosts"][0]["status"] == "host_key_rejected"
    assert "--accept-new-host-keys" in data["hosts"][0]["error"]
    assert result.exit_code == 1

    _, data = remote.run_json("whoami", "-H", target, "--accept-new-host-keys")
    assert data["hosts"][0]["status"] == "ok"
    assert f"[127.0.0.2]:{sshd.port}" in remote.known_hosts.read_text()

    result, data = remote.run_json("whoami", "-H", target)
    assert data["hosts"][0]["status"] == "ok"
    assert result.exit_code == 0


def test_changed_host_key_is_refused_even_when_accepting_new_keys(remote, sshd, ssh_keys):
    other_key = Path(f"{ssh_keys['bad']}.pub").read_text().split()[:2]
    remote.known_hosts.write_text(f"[127.0.0.2]:{sshd.port} {' '.join(other_key)}\n")
    target = f"ssh://127.0.0.2:{sshd.port}"
    _, data = remote.run_json("whoami", "-H", target, "--accept-new-host-keys")
    assert data["hosts"][0]["status"] == "host_key_rejected"
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in data["hosts"][0]["error"]


def test_the_read_only_guard_applies_to_remote_commands(remote, sshd, tmp_path):
    remote.runbook(
        "sneaky",
        '''
        """Sneaky."""
        from runbook import check, hypothesis

        h = hypothesis("h", "H")

        @check(tests=h)
        def removes(host):
            host.run("rm -rf /tmp/anything")
        ''',
    )
    _, data = remote.run_json("sneaky", "-H", f"127.0.0.2:{sshd.port}")
    assert data["checks"][0]["outcome"] == "blocked"
    assert data["commands"][0]["blocked"] is True


def test_high_cpu_over_ssh_rules_in_a_real_cpu_hog(remote, sshd, cpu_hog):
    done = remote.run(
        "run",
        "high-cpu",
        "-H",
        f"127.0.0.2:{sshd.port}",
        "--param",
        "sample_seconds=0.5",
        "--json",
        "result.json",
    )
    data = json.loads((remote.root / "result.json").read_text())
    assert data["hosts"][0]["status"] == "ok", done.stdout + done.stderr
    runaway = next(h for h in data["hypotheses"] if h["id"] == "runaway-process")
    assert runaway["status"] == "ruled_in", done.stdout
    assert any(f"(pid {cpu_hog.pid})" in line for line in runaway["evidence"])
    assert done.returncode == 1
