"""``runbook new``: the scaffold lints clean, runs, and its own test passes out of the box."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def test_new_runbook_and_its_test_pass_out_of_the_box(project):
    result = project.invoke("new", "queue-backlog", "--dir", "team/runbooks")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "created team/runbooks/queue_backlog.py",
        "created team/runbooks/test_queue_backlog.py",
        "next: edit it, then `RUNBOOK_PATH=team/runbooks runbook run queue-backlog`",
        "(or add 'team/runbooks' to `paths` in runbook.toml so it is always found)",
    ]
    env = {"RUNBOOK_PATH": str(project.root / "team" / "runbooks")}
    lint = project.run("lint", "queue-backlog", env=env)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert lint.stdout.strip() == "1 runbook(s) clean"
    dry = project.run("run", "queue-backlog", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "3 read-only checks on 1 host; 1 actions that change state" in dry.stdout
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "team/runbooks"],
        cwd=project.root,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
        timeout=300,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "3 passed" in tests.stdout


def test_the_default_folder_is_collected_without_setup(project):
    result = project.invoke("new", "queue-backlog")
    assert result.exit_code == 0, result.output
    assert "next: edit it, then `runbook run queue-backlog`" in result.output
    assert "RUNBOOK_PATH" not in result.output
    assert project.invoke("lint", "queue-backlog").exit_code == 0


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "Queue Backlog",
            "invalid runbook name 'Queue Backlog': use lowercase words joined by '-'",
        ),
        ("queue_backlog", "invalid runbook name 'queue_backlog'"),
        ("-queue", "invalid runbook name '-queue'"),
        ("test-queue", "files named test_*, *_test or runbookconf are not collected"),
        ("queue-test", "files named test_*, *_test or runbookconf are not collected"),
    ],
)
def test_bad_names_are_usage_errors(project, name, message):
    result = (
        project.invoke("new", "--", name) if name.startswith("-") else project.invoke("new", name)
    )
    assert result.exit_code == 4
    assert message in result.output
    assert "Traceback" not in result.output
    assert list(project.runbooks.iterdir()) == []


def test_existing_files_are_never_overwritten(project):
    project.runbook("queue_backlog", '"""Mine."""\n')
    result = project.invoke("new", "queue-backlog")
    assert result.exit_code == 4
    assert "runbooks/queue_backlog.py already exists; not overwriting it" in result.output
    assert (project.runbooks / "queue_backlog.py").read_text() == '"""Mine."""\n'
    assert not (project.runbooks / "test_queue_backlog.py").exists()


def test_a_name_of_the_library_is_noted_as_shadowing(project):
    result = project.invoke("new", "high-cpu")
    assert result.exit_code == 0, result.output
    assert "note: it shadows the built-in runbook high-cpu" in result.output
