"""The audit log end to end: every command and action of a run, and `runbook audit verify`."""

from __future__ import annotations

import json

RUNBOOK = '''
    """Disk fills up."""
    from runbook import action, check, hypothesis

    full = hypothesis("disk-full", "The disk is full")

    @check(tests=full)
    def disk_has_room(host):
        host.run("df -P /")
        assert False, "/ is 99% full"

    @check
    def cleans_up(host):
        host.run("rm -rf /tmp/nothing-here")  # refused, and audited as refused

    @action(mitigates=full, confirm=False)
    def rotate_logs(host):
        """Rotate the logs."""
        host.run(["touch", "{marker}"])
'''


def records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_command_and_action_is_audited_in_order(project, private_audit_log):
    marker = project.root / "rotated"
    project.runbook("disk", RUNBOOK.format(marker=marker))
    project.run_json("disk", "--execute", "--incident", "INC-7")
    log = records(private_audit_log)
    events = [(r["event"], r.get("command") or r.get("action")) for r in log]
    assert events == [
        ("run_started", None),
        ("command", "df -P /"),
        ("command", "rm -rf /tmp/nothing-here"),
        ("action_intent", "rotate_logs"),
        ("command", f"touch {marker}"),
        ("command", "df -P /"),  # the verify step runs the check again
        ("action", "rotate_logs"),
        ("host", None),
        ("run_finished", None),
    ]
    for record in log:
        assert record["runbook"] == "disk"
        assert record["mode"] == "execute"
        assert record["incident"] == "INC-7"
        assert record["operator"]
        assert record["time"].endswith("Z")
    df, rm = log[1], log[2]
    assert (df["host"], df["step"], df["exit_status"]) == ("local", "disk_has_room", 0)
    assert df["blocked"] is False
    assert (rm["step"], rm["blocked"]) == ("cleans_up", True)
    assert "allowlist" in rm["reason"]
    assert log[6]["status"] == "executed"
    assert log[6]["verification"] == "still_ruled_in"
    assert (log[7]["host"], log[7]["status"]) == ("local", "ok")
    assert log[8]["exit_code"] == 1
    assert (private_audit_log.stat().st_mode & 0o777) == 0o600


def test_audit_verify_detects_tampering(project, private_audit_log):
    project.runbook("disk", RUNBOOK.format(marker=project.root / "rotated"))
    project.run_json("disk")
    project.run_json("disk")
    result = project.invoke("audit", "verify")
    assert result.exit_code == 0, result.output
    assert "hash chain intact" in result.output

    lines = private_audit_log.read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace('"blocked":true', '"blocked":false')
    private_audit_log.write_text("".join(lines))
    result = project.invoke("audit", "verify", str(private_audit_log))
    assert result.exit_code == 1
    assert "TAMPERED" in result.output and "line 4" in result.output


def test_an_unwritable_audit_log_is_a_clear_usage_error(project, monkeypatch):
    blocker = project.root / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("RUNBOOK_AUDIT_LOG", str(blocker / "audit.jsonl"))
    project.runbook("disk", RUNBOOK.format(marker=project.root / "rotated"))
    result = project.invoke("run", "disk")
    assert result.exit_code == 4
    assert "cannot write the audit log" in result.output
    assert "Traceback" not in result.output


def test_audit_log_path_from_configuration(project, monkeypatch):
    monkeypatch.delenv("RUNBOOK_AUDIT_LOG")
    project.write("runbook.toml", 'audit_log = "logs/audit.jsonl"\n')
    project.runbook("disk", RUNBOOK.format(marker=project.root / "rotated"))
    project.run_json("disk")
    assert records(project.root / "logs" / "audit.jsonl")[0]["event"] == "run_started"
    assert project.invoke("audit", "verify").exit_code == 0
