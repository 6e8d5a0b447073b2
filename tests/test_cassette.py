"""``run --record`` / ``--replay``: cassettes of real runs, replayed without any target."""

from __future__ import annotations

import json
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
import yaml
from resultdata import by_id
from resultdata import statuses
from sshd import SSHServer

from runbook.hosts.cassette import SCHEMA
from runbook.hosts.cassette import Cassette

PROBE = '''
"""Probe.

Symptoms: something is off.
"""
from runbook import check, evidence, fixture, hypothesis, rule_in, rule_out

PARAMS = {"path": "state.txt", "api_token": ""}

bad_state = hypothesis("bad-state", "The state file says bad")
no_tool = hypothesis("no-tool", "A tool is missing")


@fixture(scope="host")
def inventory(host):
    return host.exchange("api", "GET /inventory", lambda: {"items": [1, 2, 3]})


@check(tests=bad_state)
def state_is_good(host, params, inventory):
    text = host.read_text(params.path)
    evidence("state", text)
    evidence("inventory", str(inventory["items"]))
    assert "bad" not in text, f"state is {text.strip()}"


@check(tests=no_tool)
def tools_present(host, params):
    first = host.run("cat %s", params.path).stdout
    second = host.run("cat %s", params.path).stdout
    evidence("reads", f"{first.strip()} then {second.strip()}")
    listing = host.run("echo token=%s", params.api_token)
    evidence("listing", listing)
    rule_out("every tool answered")
'''


@pytest.fixture
def probe(project):
    project.runbook("probe", PROBE)
    project.write("state.txt", "bad: disk\n")
    return project


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_record_writes_a_readable_private_cassette(probe):
    result, _data = probe.run_json("probe", "--record", "probe.yaml")
    assert result.exit_code == 1, result.output
    cassette = probe.root / "probe.yaml"
    assert stat.S_IMODE(cassette.stat().st_mode) == 0o600
    text = cassette.read_text()
    loaded = _load(cassette)
    assert loaded["schema"] == SCHEMA == "runbook.cassette/1"
    assert loaded["runbook"] == "probe"
    tape = loaded["hosts"]["local"]
    assert tape["spec"] == "local"
    commands = [item.get("command") for item in tape["interactions"]]
    assert commands[:1] == [None]  # the fixture's exchange comes first
    assert tape["interactions"][0] == {
        "api": "GET /inventory",
        "check": "state_is_good",
        "duration_s": tape["interactions"][0]["duration_s"],
        "response": {"items": [1, 2, 3]},
    }
    assert "cat -- state.txt" in commands
    assert commands.count("cat state.txt") == 2
    reads = [item for item in tape["interactions"] if item.get("command") == "cat state.txt"]
    assert {item["check"] for item in reads} == {"tools_present"}
    assert reads[0]["exit_status"] == 0 and reads[0]["stdout"] == "bad: disk\n"
    assert "stdout: |" in text  # outputs are block scalars: one line per line, diff-friendly


def test_replay_answers_from_the_cassette_and_gives_the_same_statuses(probe):
    _, recorded = probe.run_json("probe", "--record", "probe.yaml")
    probe.write("state.txt", "good\n")  # the target changed since: replay must not look at it
    result, replayed = probe.run_json("probe", "--replay", "probe.yaml")
    assert result.exit_code == 1, result.output
    assert (
        statuses(replayed)
        == statuses(recorded)
        == {
            "bad-state": "ruled_in",
            "no-tool": "ruled_out",
        }
    )
    check = by_id(replayed["checks"])["state_is_good"]
    assert check["message"] == "state is bad: disk"
    assert by_id(replayed["checks"])["tools_present"]["outcome"] == "passed"


def test_a_replay_says_it_is_one_everywhere(probe, private_audit_log):
    _, recorded = probe.run_json("probe", "--record", "probe.yaml")
    assert recorded["replay"] is None
    result, replayed = probe.run_json("probe", "--replay", "probe.yaml")
    assert "replay of probe.yaml · " in result.output
    assert replayed["replay"] == "probe.yaml"
    assert replayed["mode"] == "read-only"
    report = (probe.root / "probe.md").read_text()
    assert (
        "| mode        | replay of cassette probe.yaml (read-only, no target contacted)" in report
    )
    records = [json.loads(line) for line in private_audit_log.read_text().splitlines()]
    live, replay = [r for r in records if r["event"] == "run_started"]
    assert live["mode"] == "read-only" and "cassette" not in live
    assert replay["mode"] == "replay" and replay["cassette"] == "probe.yaml"
    replayed_commands = [r for r in records if r["event"] == "command" and "cassette" in r]
    assert replayed_commands and all(r["mode"] == "replay" for r in replayed_commands)


def test_a_repeated_command_is_answered_in_recorded_order(probe):
    cassette = Cassette.from_outputs(
        "probe",
        {
            "cat -- state.txt": "good\n",
            "echo token=''": "token=\n",
        },
    )
    tape = cassette.hosts["local"]
    from runbook.hosts.cassette import Interaction

    tape.interactions += [
        Interaction("cat state.txt", "first\n"),
        Interaction("cat state.txt", "second\n"),
        Interaction("GET /inventory", kind="api", response={"items": []}),
    ]
    (probe.root / "canned.yaml").write_text(cassette.dumps())
    result, data = probe.run_json("probe", "--replay", "canned.yaml")
    assert result.exit_code == 0, result.output
    evidence = by_id(data["checks"])["tools_present"]["evidence"]
    assert evidence[0]["body"].strip() == "first then second"


def test_a_command_missing_from_the_cassette_is_an_error_naming_it(probe):
    probe.run_json("probe", "--record", "probe.yaml")
    data = _load(probe.root / "probe.yaml")
    tape = data["hosts"]["local"]
    tape["interactions"] = [
        i for i in tape["interactions"] if i.get("command") != "cat -- state.txt"
    ]
    (probe.root / "probe.yaml").write_text(yaml.safe_dump(data))
    _result, replayed = probe.run_json("probe", "--replay", "probe.yaml")
    check = by_id(replayed["checks"])["state_is_good"]
    assert check["outcome"] == "error"
    assert "command not in cassette probe.yaml for host local: cat -- state.txt" in check["message"]
    assert statuses(replayed)["bad-state"] == "inconclusive"
    assert by_id(replayed["checks"])["tools_present"]["outcome"] == "passed"


def test_secrets_are_redacted_in_the_cassette_and_replay_still_matches(probe):
    secret = "s3cr3t-Value-0123456789"
    _, recorded = probe.run_json(
        "probe", "--record", "probe.yaml", "--param", f"api_token={secret}"
    )
    text = (probe.root / "probe.yaml").read_text()
    assert secret not in text
    assert _load(probe.root / "probe.yaml")["params"] == {"api_token": "***"}
    result, replayed = probe.run_json(
        "probe", "--replay", "probe.yaml", "--param", "api_token=another-secret-9876543210"
    )
    assert by_id(replayed["checks"])["tools_present"]["outcome"] == "passed", result.output
    assert statuses(replayed) == statuses(recorded)
    assert secret not in json.dumps(replayed)


def test_replay_reuses_the_recorded_parameters(probe):
    probe.write("other.txt", "bad: other\n")
    probe.run_json("probe", "--record", "probe.yaml", "--param", "path=other.txt")
    _result, replayed = probe.run_json("probe", "--replay", "probe.yaml")
    assert by_id(replayed["checks"])["state_is_good"]["message"] == "state is bad: other"
    assert replayed["params"]["path"] == "other.txt"


def test_timeouts_and_unreachable_hosts_replay_as_recorded(project, tmp_path):
    project.runbook(
        "slow",
        '''
        """Slow."""
        from runbook import check, hypothesis
        stuck = hypothesis("stuck", "Something is stuck")

        @check(tests=stuck)
        def answers_quickly(host):
            host.run("sleep 5", timeout=0.2)
        ''',
    )
    _, recorded = project.run_json(
        "slow", "--record", "slow.yaml", "-H", "local,ssh://runbook-ssh@127.0.0.1:1"
    )
    tapes = _load(project.root / "slow.yaml")["hosts"]
    assert tapes["local"]["interactions"][0]["timed_out"] is True
    assert tapes["127.0.0.1:1"]["unavailable"]["status"] == "unreachable"
    _result, replayed = project.run_json("slow", "--replay", "slow.yaml")
    assert [(h["name"], h["status"]) for h in replayed["hosts"]] == [
        (h["name"], h["status"]) for h in recorded["hosts"]
    ]
    assert [c["outcome"] for c in replayed["checks"]] == [c["outcome"] for c in recorded["checks"]]
    assert statuses(replayed) == statuses(recorded)


@pytest.fixture
def shared_folder():
    """A folder the SSH test user can read (pytest's own are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="runbook-cassette-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def test_an_ssh_run_replays_with_no_server(remote_project, sshd: SSHServer, shared_folder):
    project = remote_project
    project.runbook("probe", PROBE)
    target = f"127.0.0.2:{sshd.port}"
    state = shared_folder / "remote-state.txt"
    state.write_text("bad: remote\n")
    state.chmod(0o644)
    result, recorded = project.run_json(
        "probe", "-H", target, "--param", f"path={state}", "--record", "probe.yaml"
    )
    assert [h["status"] for h in recorded["hosts"]] == ["ok"], result.output
    assert statuses(recorded)["bad-state"] == "ruled_in"
    (project.root / "runbook.toml").unlink()  # no SSH settings, no known_hosts: nothing to reach
    result, replayed = project.run_json("probe", "--replay", "probe.yaml")
    assert replayed["hosts"] == recorded["hosts"]
    assert statuses(replayed) == statuses(recorded)
    assert by_id(replayed["checks"])["state_is_good"]["message"] == "state is bad: remote"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--replay", "x.yaml", "--record", "y.yaml"], "--record and --replay exclude each other"),
        (["--replay", "missing.yaml"], "cannot read cassette missing.yaml"),
        (["--replay", "other.yaml"], "was recorded for runbook 'disk-full', not 'probe'"),
        (["--replay", "schema.yaml"], "expected 'runbook.cassette/1'"),
        (["--replay", "broken.yaml"], "cassette broken.yaml:2 is not valid YAML"),
        (["--replay", "probe.yaml", "-H", "web9"], "host 'web9' is not in the cassette"),
        (["--record", "y.yaml", "--execute"], "--record works with read-only runs"),
    ],
)
def test_bad_cassette_use_is_a_one_line_usage_error(probe, args, message):
    (probe.root / "x.yaml").write_text(Cassette("probe").dumps())
    (probe.root / "other.yaml").write_text(Cassette("disk-full").dumps())
    (probe.root / "probe.yaml").write_text(Cassette.from_outputs("probe", {}).dumps())
    (probe.root / "schema.yaml").write_text("schema: runbook.cassette/9\nrunbook: probe\n")
    (probe.root / "broken.yaml").write_text("hosts: [\n")
    done = probe.run("run", "probe", *args)
    assert done.returncode == 4, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_several_runbooks_cannot_share_a_cassette(probe):
    probe.runbook(
        "other", '"""Other."""\nfrom runbook import check\n\n@check\ndef ok(host):\n    pass\n'
    )
    done = probe.run("run", "probe", "other", "--record", "both.yaml")
    assert done.returncode == 4
    assert "--record names one cassette: give it with a single runbook" in done.stderr


def test_an_interrupted_recording_keeps_what_it_recorded(project):
    project.runbook(
        "hang",
        '''
        """Hang."""
        from runbook import check

        @check
        def first(host):
            host.run("echo first-answer")

        @check(timeout=60)
        def second(host):
            print("second started", flush=True)
            host.run("sleep 30")
        ''',
    )
    code, _out, err, _ = project.interrupt(
        "run", "hang", "--record", "hang.yaml", "-v", after="second started"
    )
    assert code == 2, err
    tape = _load(project.root / "hang.yaml")["hosts"]["local"]
    assert tape["interactions"][0]["stdout"] == "first-answer\n"
