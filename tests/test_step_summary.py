"""With ``$GITHUB_STEP_SUMMARY`` set, each report and plan is appended to the job summary."""

from __future__ import annotations

CALM = '''
    """Calm queue.

    Symptoms: none really.
    """
    from runbook import check, hypothesis

    PARAMS = {"db_password": "hunter2-but-longer"}
    h = hypothesis("stuck", "The queue is stuck")

    @check(tests=h)
    def fine(host, params):
        assert params.db_password != "hunter2-but-longer", "leaked? " + params.db_password
'''

OTHER = '''
    """Other one."""
    from runbook import check, hypothesis

    h = hypothesis("other", "Other")

    @check(tests=h)
    def fine(host):
        pass
'''


def test_reports_are_appended_to_the_job_summary(project):
    project.runbook("calm_queue", CALM)
    project.runbook("other_one", OTHER)
    summary = project.root / "summary.md"
    summary.write_text("## Earlier step\n\n")
    env = {"GITHUB_STEP_SUMMARY": str(summary)}
    result = project.run("run", "calm-queue", "other-one", "-q", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    text = summary.read_text()
    assert text.startswith("## Earlier step\n\n")  # appended, never overwritten
    assert text.index("Calm queue") < text.index("Other one")
    [report] = (project.root / "runbook-reports").glob("*-calm-queue.md")
    assert report.read_text() in text  # the very report, rendered once
    assert "hunter2-but-longer" not in text
    assert "ruled in" in text


def test_the_dry_run_plan_is_appended_too(project):
    project.runbook("calm_queue", CALM)
    summary = project.root / "summary.md"
    env = {"GITHUB_STEP_SUMMARY": str(summary)}
    result = project.run("run", "calm-queue", "--dry-run", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    text = summary.read_text()
    assert text.startswith("# Plan: Calm queue\n")
    assert "**1 read-only checks on 1 host; 0 actions that change state (none)" in text


def test_an_unwritable_summary_warns_and_keeps_the_report(project):
    project.runbook("calm_queue", CALM)
    env = {"GITHUB_STEP_SUMMARY": str(project.root / "no" / "such" / "dir" / "summary.md")}
    result = project.run("run", "calm-queue", "-q", "--report", "r.md", env=env)
    assert result.returncode == 1, result.stderr
    assert "warning: cannot append to $GITHUB_STEP_SUMMARY" in result.stderr
    assert "Traceback" not in result.stderr
    assert (project.root / "r.md").read_text().startswith("# ")


def test_nothing_is_appended_without_the_variable(project, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    project.runbook("calm_queue", CALM)
    result = project.invoke("run", "calm-queue", "-q")
    assert result.exit_code == 1
    assert sorted(p.name for p in project.root.iterdir()) == ["runbook-reports", "runbooks"]
