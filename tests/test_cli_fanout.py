"""Many targets: parallel fan-out, per-host status, and one dead host not stalling others."""

from __future__ import annotations

import time

PLUGIN = '''
    """Targets `fake://NAME` that run commands locally; `fake://dead-*` cannot be reached."""
    from runbook import hookimpl
    from runbook.hosts.local import LocalBackend
    from runbook.outcomes import HostUnavailable


    class FakeBackend(LocalBackend):
        def __init__(self, name):
            super().__init__(name)
            self.uri = f"fake://{name}"

        def connect(self):
            if self.name.startswith("dead"):
                raise HostUnavailable("unreachable", f"{self.name}: connection refused")
            if self.name.startswith("locked"):
                raise HostUnavailable("auth_failed", f"{self.name}: no key was accepted")


    @hookimpl
    def runbook_make_host(spec, config):
        if spec.startswith("fake://"):
            return FakeBackend(spec.removeprefix("fake://"))
        return None
'''

RUNBOOK = '''
    """Slow checks."""
    from runbook import check, hypothesis

    h = hypothesis("slow", "The host is slow")

    @check(tests=h)
    def takes_a_while(host):
        host.run("sleep 0.5")

    @check(tests=h)
    def rules_in_on_web2(host):
        assert host.name != "web2", "web2 is slow"
'''


def setup(project):
    project.write("tools/fake.py", PLUGIN)
    project.write("runbook.toml", 'plugins = ["tools/fake.py"]\n')
    project.runbook("slow", RUNBOOK)


def test_hosts_run_in_parallel_and_a_dead_host_does_not_stop_the_others(project):
    setup(project)
    hosts = "fake://web1,fake://web2,fake://dead1,fake://web3,fake://locked1,fake://web4"
    started = time.monotonic()
    result, data = project.run_json("slow", "-H", hosts, "--forks", "6")
    elapsed = time.monotonic() - started
    # Four reachable hosts each sleep 0.5 s: in parallel that is far less than 2 s.
    assert elapsed < 1.6, f"{elapsed:.2f}s: hosts did not run in parallel"
    statuses = {h["name"]: h["status"] for h in data["hosts"]}
    assert statuses == {
        "web1": "ok",
        "web2": "ok",
        "dead1": "unreachable",
        "web3": "ok",
        "locked1": "auth_failed",
        "web4": "ok",
    }
    dead = next(h for h in data["hosts"] if h["name"] == "dead1")
    assert dead["error"] == "dead1: connection refused"
    assert {c["host"] for c in data["checks"]} == {"web1", "web2", "web3", "web4"}
    # Results keep the order of the targets, whatever order they finished in.
    assert [c["host"] for c in data["checks"]][::2] == ["web1", "web2", "web3", "web4"]
    hypothesis = data["hypotheses"][0]
    assert hypothesis["status"] == "ruled_in"
    assert hypothesis["hosts"]["web2"] == "ruled_in"
    assert hypothesis["hosts"]["dead1"] == "untested"
    assert "host dead1: UNREACHABLE: dead1: connection refused" in result.output
    assert "hosts done: 6/6" in result.output
    assert result.exit_code == 1
    report = (project.root / "slow.md").read_text()
    assert "ruled in on web2" in report
    assert "dead1 (unreachable)" in report


def test_forks_limits_how_many_hosts_run_at_once(project):
    setup(project)
    started = time.monotonic()
    _, data = project.run_json("slow", "-H", "fake://a1,fake://a2,fake://a3", "--forks", "1")
    assert time.monotonic() - started >= 1.5
    assert [h["status"] for h in data["hosts"]] == ["ok", "ok", "ok"]


def test_an_unreachable_only_target_exits_1_with_its_reason(project):
    setup(project)
    result, data = project.run_json("slow", "-H", "fake://dead9")
    assert result.exit_code == 1
    assert data["hosts"][0]["status"] == "unreachable"
    assert data["checks"] == []
    assert data["hypotheses"][0]["status"] == "untested"


def test_ctrl_c_during_a_parallel_run_keeps_what_was_found(project):
    import json
    import subprocess

    setup(project)
    project.runbook(
        "hang",
        '''
        """Hangs."""
        from runbook import check, hypothesis

        h = hypothesis("h", "H")

        @check(tests=h)
        def quick(host):
            pass

        @check(tests=h)
        def hangs(host):
            host.run("sleep 61.5")  # an odd duration: other test runs may be sleeping 60
        ''',
    )
    code, out, err, stopping = project.interrupt(
        "run",
        "hang",
        "-H",
        "fake://a1,fake://a2,fake://a3",
        "--json",
        "out.json",
        "--report",
        "out.md",
        after="PASSED",
        times=3,
    )
    assert stopping < 5, "Ctrl-C did not stop the sleeping commands"
    assert code == 2, out + err
    data = json.loads((project.root / "out.json").read_text())
    assert data["interrupted"] is True
    assert sorted(c["host"] for c in data["checks"]) == ["a1", "a2", "a3"]
    assert "Partial report" in (project.root / "out.md").read_text()
    assert "Traceback" not in err
    assert subprocess.run(["pgrep", "-f", "sleep 61.5"], capture_output=True).returncode == 1
