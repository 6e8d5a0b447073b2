"""An incident end to end through the CLI: open, runs, notes, status, post-mortem."""

from __future__ import annotations

import json
import re
import stat

import pytest

DISK = '''
    """Disk filling up.

    Symptoms: writes fail with ENOSPC.
    """
    from runbook import check, hypothesis

    full = hypothesis("fs-full", "The filesystem is almost full")
    inodes = hypothesis("inodes", "Inodes are exhausted")

    @check(tests=full)
    def filesystem_has_room(host):
        assert False, "/var at 97%"

    @check(tests=inodes)
    def inodes_left(host):
        pass
'''

LOGS = '''
    """Huge logs.

    Symptoms: /var grows fast.
    """
    from runbook import action, check, hypothesis

    huge = hypothesis("huge-log", "One log file is huge")
    held = hypothesis("deleted-held", "Deleted files are still held open")

    @check(tests=huge)
    def no_huge_log(host):
        assert False, "app.log is 40 GB"

    @check(tests=held)
    def nothing_held_open(host):
        pass

    @action(mitigates=huge)
    def rotate_logs(host):
        host.run("true")
'''


def open_incident(project, *args: str) -> str:
    result = project.invoke("incident", "open", *args)
    assert result.exit_code == 0, result.output
    incident = result.output.strip()
    assert re.fullmatch(r"INC-\d{8}-\d{3}", incident)
    return incident


def test_an_incident_from_opening_to_post_mortem(project):
    project.runbook("disk", DISK)
    project.runbook("logs", LOGS)
    incident = open_incident(project, "Checkout writes fail", "--severity", "P2")
    first, data = project.run_json("disk", "--incident", incident)
    assert first.exit_code == 1, first.output
    assert (data["incident"], data["severity"], data["severity_source"]) == (
        incident,
        "P2",
        "operator",
    )
    note = project.invoke("incident", "note", incident, "paged", "the", "storage", "team")
    assert note.exit_code == 0
    second = project.run("run", "logs", "--incident", incident, "--execute", "--yes")
    assert second.returncode == 1, second.stderr
    assert project.invoke("incident", "status", incident, "resolved").exit_code == 0

    shown = project.invoke("incident", "show", incident, "--json")
    events = json.loads(shown.output)["events"]
    kinds = [event["kind"] for event in events]
    assert kinds == [
        "opened",
        "run_started",  # disk
        "ruled_in",
        "status",  # identified
        "run_finished",
        "note",
        "run_started",  # logs
        "ruled_in",
        "action",
        "status",  # monitoring
        "run_finished",
        "status",  # resolved
    ]
    times = [event["time"] for event in events]
    assert times == sorted(times)
    assert [e["status"] for e in events if e["kind"] == "status"] == [
        "identified",
        "monitoring",
        "resolved",
    ]

    done = project.run("postmortem", incident, "-o", "pm.md")
    assert done.returncode == 0, done.stderr
    text = (project.root / "pm.md").read_text()
    assert stat.S_IMODE((project.root / "pm.md").stat().st_mode) == 0o600
    assert text.startswith(f"# Post-mortem: Checkout writes fail ({incident})")
    timeline = section(text, "Timeline")
    rows = [line for line in timeline.splitlines() if re.match(r"\| \d{4}-", line)]
    assert len(rows) == len(events)
    stamps = [row.split("|")[1].strip() for row in rows]
    assert stamps == sorted(stamps)
    assert all(stamp.endswith("Z") for stamp in stamps)
    expected = [
        "incident opened: Checkout writes fail",
        "runbook disk started",
        "disk: fs-full ruled in on local by filesystem_has_room: /var at 97%",
        "status: identified",
        "runbook disk finished (exit status 1); ruled in: fs-full",
        "paged the storage team",
        "runbook logs started (execute)",
        "logs: huge-log ruled in on local by no_huge_log: app.log is 40 GB",
        "logs: action rotate_logs on local: executed",
        "status: monitoring",
        "runbook logs finished (exit status 1); ruled in: huge-log",
        "status: resolved",
    ]
    for row, words in zip(rows, expected, strict=True):
        assert words in row
    causes = section(text, "Root cause candidates")
    assert "### fs-full: The filesystem is almost full" in causes
    assert "### huge-log: One log file is huge" in causes
    assert "- /var at 97%" in causes and "- app.log is 40 GB" in causes
    ruled_out = section(text, "Ruled out")
    assert "inodes" in ruled_out and "deleted-held" in ruled_out
    assert "rotate_logs" in section(text, "Actions taken")
    followups = section(text, "Follow-up items")
    assert '- [ ] Alert on "One log file is huge" (huge-log)' in followups
    assert "- [ ] Reproduce fs-full in a test of runbook `disk`" in followups
    assert re.search(r"\| resolved \(UTC\) +\| 20\d\d-", text)
    assert "P2 (partial degradation, a workaround exists), set by operator" in text


def section(text: str, title: str) -> str:
    """The body of a ``## title`` section of a Markdown text."""
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_show_prints_the_merged_timeline(project):
    incident = open_incident(project, "Slow API", "--impact", "p99 at 4s")
    project.invoke("incident", "note", incident, "looking at the DB")
    project.invoke("incident", "severity", incident, "P1")
    shown = project.invoke("incident", "show", incident)
    lines = shown.output.splitlines()
    assert lines[0] == f"{incident}: Slow API"
    assert lines[1].startswith("P1, set by operator ")
    assert "investigating" in lines[1]
    assert lines[2] == "impact: p99 at 4s"
    body = [line for line in lines if re.match(r"\d{4}-\d\d-\d\dT", line)]
    assert [line.split()[1] for line in body] == ["opened", "note", "severity"]
    assert "looking at the DB" in body[1]


def test_a_run_under_a_new_id_creates_the_incident(project):
    project.runbook("disk", DISK)
    result, data = project.run_json("disk", "--incident", "INC-PAGE-42", "--severity", "P3")
    assert result.exit_code == 1
    state = json.loads(project.invoke("incident", "show", "INC-PAGE-42", "--json").output)
    assert state["title"] == "Disk filling up"
    assert state["severity"] == "P3"
    assert state["severity_set_by"].startswith("operator ")
    assert state["status"] == "identified"
    folder = project.root / "runbook-reports" / "incidents" / "INC-PAGE-42"
    (kept,) = (folder / "runs").glob("*-disk.json")
    assert json.loads(kept.read_text())["hypotheses"] == data["hypotheses"]
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("incident.json", "events.jsonl"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600


def test_the_incident_severity_is_used_by_later_runs(project):
    project.runbook("disk", DISK)
    incident = open_incident(project, "Disk", "--severity", "P1")
    _, data = project.run_json("disk", "--incident", incident)
    assert (data["severity"], data["severity_source"]) == ("P1", "operator")
    report = (project.root / "disk.md").read_text()
    assert "| severity    | P1 (set by the operator)" in report


def test_the_store_follows_the_configured_report_dir(project):
    project.write("runbook.toml", 'report_dir = "out"\n')
    incident = open_incident(project, "Elsewhere")
    assert (project.root / "out" / "incidents" / incident / "incident.json").is_file()


@pytest.mark.parametrize(
    "args",
    [
        ["incident", "note", "INC-NOPE", "hello"],
        ["incident", "status", "INC-NOPE", "resolved"],
        ["incident", "show", "INC-NOPE"],
        ["incident", "severity", "INC-NOPE", "P1"],
        ["postmortem", "INC-NOPE"],
    ],
)
def test_unknown_incident_is_a_usage_error(project, args):
    done = project.run(*args)
    assert done.returncode == 4
    assert done.stderr.strip() == (
        "runbook: error: unknown incident 'INC-NOPE' (`runbook incident open TITLE` creates one)"
    )
    assert not (project.root / "runbook-reports" / "incidents" / "INC-NOPE").exists()


@pytest.mark.parametrize("bad", ["../etc", "a/b", ".hidden", "x" * 65, ""])
def test_an_id_that_cannot_be_a_folder_is_a_usage_error(project, bad):
    project.runbook("disk", DISK)
    done = project.run("run", "disk", "--incident", bad)
    assert done.returncode == 4
    assert "invalid incident id" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (project.root / "runbook-reports").exists()


def test_usage_errors_of_the_incident_commands(project):
    incident = open_incident(project, "Dup")
    again = project.run("incident", "open", "Dup again", "--id", incident)
    assert again.returncode == 4
    assert f"incident {incident} already exists" in again.stderr
    assert project.run("incident", "status", incident, "fixed").returncode == 4
    assert project.run("incident", "open", "X", "--severity", "P5").returncode == 4


def test_notes_are_redacted(project):
    incident = open_incident(project, "Leak")
    token = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
    project.invoke("incident", "note", incident, f"rotated token {token}")
    assert token not in project.invoke("incident", "show", incident).output


def test_list_shows_incidents_newest_first(project):
    first = open_incident(project, "First")
    second = open_incident(project, "Second", "--severity", "P4")
    lines = project.invoke("incident", "list").output.splitlines()
    assert lines[0].split()[:3] == [second, "P4", "investigating"]
    assert lines[1].split()[:3] == [first, "--", "investigating"]


def test_an_unwritable_store_is_a_warning_and_the_investigation_goes_on(project):
    project.runbook("disk", DISK)
    project.write("runbook-reports/incidents", "not a folder\n")
    result, data = project.run_json("disk", "--incident", "INC-FULL")
    assert result.exit_code == 1  # the finding, not the store
    assert data["hypotheses"][0]["status"] == "ruled_in"
    assert any(w.startswith("incident INC-FULL not recorded: ") for w in data["warnings"])
