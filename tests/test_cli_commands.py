"""End-to-end tests of ``list``, ``show``, ``new``, ``lint``, ``plugins`` and start-up."""

from __future__ import annotations

import json
import subprocess
import sys

HEALTHY = '''
    """Queue backlog.

    Symptoms: jobs wait for minutes.
    """
    from runbook import action, check, hypothesis

    PARAMS = {"queue": "default", "max_depth": 100}
    TAGS = ["queues", "workers"]
    SEVERITY = "P2"

    stuck = hypothesis("workers-stuck", "Workers stopped consuming")

    @check(tests=stuck)
    def workers_consume(host, params):
        """Workers took a job in the last minute."""

    @action(mitigates=stuck)
    def restart_workers(host):
        """Restart the workers."""
'''


def test_help_is_fast_and_imports_no_heavy_module(project):
    code = (
        "import sys, time; t = time.perf_counter();"
        "from runbook.cli.main import cli;"
        "cli.main(['--help'], standalone_mode=False);"
        "heavy = sorted(m for m in ('jinja2', 'paramiko', 'tabulate', 'runbook.engine.runner',"
        " 'runbook.collect') if m in sys.modules);"
        "print('HEAVY', heavy)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout
    assert "runbook run high-cpu" in done.stdout


def test_usage_error_from_click_exits_4(project):
    result = project.invoke("frobnicate")
    assert result.exit_code == 4
    assert "No such command 'frobnicate'" in result.output


def test_list_shows_local_and_builtin_runbooks_with_source(project):
    project.runbook("queue_backlog", HEALTHY)
    result = project.invoke("list")
    assert result.exit_code == 0, result.output
    line = next(row for row in result.output.splitlines() if row.startswith("queue-backlog"))
    assert line.split()[-4:] == ["1", "1", "1", "runbooks/queue_backlog.py"]
    assert "Queue backlog" in line
    builtin = next(row for row in result.output.splitlines() if row.startswith("high-cpu"))
    assert builtin.rstrip().endswith("builtin")


def test_list_json_and_tag_filter(project):
    project.runbook("queue_backlog", HEALTHY)
    result = project.invoke("list", "--tag", "queues", "--json")
    data = json.loads(result.output)
    assert [item["name"] for item in data] == ["queue-backlog"]
    assert data[0]["hypotheses"] == ["workers-stuck"]
    assert data[0]["severity"] == "P2"
    assert project.invoke("list", "--tag", "nope", "--json").output.strip() == "[]"


def test_local_runbook_shadows_builtin(project):
    project.runbook("high_cpu", HEALTHY.replace("Queue backlog", "Our own high CPU"))
    result = project.invoke("list")
    line = next(row for row in result.output.splitlines() if row.startswith("high-cpu"))
    assert "Our own high CPU" in line and "runbooks/high_cpu.py" in line
    assert "high-cpu from builtin is shadowed by runbooks/high_cpu.py" in result.output


def test_show_describes_the_runbook(project):
    project.runbook("queue_backlog", HEALTHY)
    result = project.invoke("show", "queue-backlog")
    assert result.exit_code == 0
    out = result.output
    assert out.startswith("queue-backlog: Queue backlog\n")
    assert "Symptoms: jobs wait for minutes." in out
    assert "workers-stuck: Workers stopped consuming" in out
    assert "tested by: workers_consume" in out
    assert "restart_workers [mitigates workers-stuck] Restart the workers." in out
    assert "max_depth  int     100" in out
    assert "severity: P2" in out


def test_show_unknown_runbook(project):
    result = project.invoke("show", "queue")
    assert result.exit_code == 4
    assert "unknown runbook 'queue'" in result.output


def test_new_scaffolds_a_runbook_that_runs_and_a_test_that_passes(project):
    result = project.invoke("new", "my-check", "--dir", "runbooks")
    assert result.exit_code == 0, result.output
    assert (project.runbooks / "my_check.py").exists()
    assert (project.runbooks / "test_my_check.py").exists()
    assert project.invoke("new", "my-check").exit_code == 4  # refuses to overwrite
    assert project.invoke("new", "My Check").exit_code == 4
    run = project.invoke("run", "my-check", "-q")
    assert run.exit_code in (0, 1), run.output
    assert "runbook-reports/" in run.output
    tests = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "runbooks/test_my_check.py",
        ],
        cwd=project.root,
        capture_output=True,
        text=True,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "3 passed" in tests.stdout


def test_lint_reports_findings_with_file_and_line(project):
    project.runbook("queue_backlog", HEALTHY)
    project.runbook(
        "sloppy",
        """
        from runbook import action, check, hypothesis

        lonely = hypothesis("lonely", "Nobody tests me")
        other = hypothesis("other", "Other")

        @check(tests=other)
        def writes(host):
            host.run("rm -rf /var/tmp/cache")

        @action
        def does_something(host):
            pass
        """,
    )
    result = project.invoke("lint")
    assert result.exit_code == 1
    out = result.output
    assert "sloppy.py:1" in out and "docstring" in out
    assert "hypothesis 'lonely' is not tested by any check" in out
    assert "sloppy.py:10" in out and "does_something' mitigates no hypothesis" in out
    assert "sloppy.py:8" in out and "'rm' is not on the read-only allowlist" in out
    assert "queue_backlog" not in out
    assert project.invoke("lint", "queue-backlog").exit_code == 0


def test_dry_run_contacts_nothing_and_prints_the_plan(project):
    project.runbook("queue_backlog", HEALTHY)
    result = project.invoke("run", "queue-backlog", "--dry-run", "-H", "local")
    assert result.exit_code == 0, result.output
    assert (
        "queue-backlog: 1 read-only checks on 1 host; 1 actions that change state "
        "(restart_workers), gated by --execute and confirmation" in result.output
    )
    assert "check  workers_consume [workers-stuck]" in result.output
    written = sorted(p.name for p in (project.root / "runbook-reports").iterdir())
    assert [name.split("-", 1)[1] for name in written] == [
        "queue-backlog-plan.json",
        "queue-backlog-plan.md",
    ]


def test_plugins_lists_plugins_hooks_and_fixtures(project):
    project.write(
        "runbooks/runbookconf.py",
        """
        from runbook import fixture, hookimpl

        @fixture(scope="run")
        def team():
            return "sre"

        @hookimpl
        def runbook_run_finished(result):
            pass
        """,
    )
    result = project.invoke("plugins")
    assert result.exit_code == 0
    assert "runbook.safety.guard" in result.output
    assert "runbook.output.terminal" in result.output
    assert "runbook_run_finished" in result.output
    assert "runbookconf.py" in result.output


def test_misspelled_hook_fails_at_startup(project):
    project.write(
        "runbooks/runbookconf.py",
        """
        from runbook import hookimpl

        @hookimpl
        def runbook_run_finishd(result):
            pass
        """,
    )
    result = project.invoke("list")
    assert result.exit_code == 4
    assert "unknown hook 'runbook_run_finishd'" in result.output


def test_naming_a_built_in_plugin_in_the_configuration_is_harmless(project):
    project.write("runbook.toml", 'plugins = ["runbook.plugins.http", "runbook.plugins.logs"]\n')
    result = project.invoke("plugins")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines().count("runbook.plugins.logs") == 1
