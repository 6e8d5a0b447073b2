"""``run --dry-run``: validate, then print and write the plan; contact no target, run nothing."""

from __future__ import annotations

import json
import time

QUEUE = '''
    """Queue backlog.

    Symptoms: messages pile up.
    """
    from pathlib import Path

    from runbook import action, check, hypothesis

    PARAMS = {"queue": "jobs", "max_depth": 100, "api_token": "s3cr3t-value"}

    stuck = hypothesis("workers-stuck", "The workers stopped consuming")
    slow = hypothesis("slow-disk", "The disk is slow")

    @check
    def queue_is_deep(host, params):
        """The reported symptom: the queue is deeper than max_depth."""
        print("CHECK BODY RAN", flush=True)
        assert False, "deep"

    @check(tests=stuck, timeout=5)
    def workers_consume(host, params):
        """Workers took a message lately."""
        print("CHECK BODY RAN", flush=True)
        assert False, "stuck"

    @check(tests=slow, needs=stuck)
    def disk_is_fast(host):
        print("CHECK BODY RAN", flush=True)

    @action(mitigates=stuck)
    def restart_workers(host, params):
        """Restart the workers."""
        Path(params.queue + ".marker").write_text("the action ran")

    @action(mitigates=[stuck, slow], confirm=False)
    def clear_cache(host):
        Path("cache.marker").write_text("the action ran")
'''

PREVIEW = (
    "queue-backlog: 3 read-only checks on {hosts}; 2 actions that change state "
    "(restart_workers, clear_cache), gated by --execute and confirmation"
)


def test_the_plan_opens_with_the_safety_preview_then_checks_and_actions(project):
    project.runbook("queue_backlog", QUEUE)
    result = project.invoke("run", "queue-backlog", "--dry-run")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == PREVIEW.format(hosts="1 host")
    assert lines[1].startswith("  on each host, in order: local (local://")
    assert lines[2:7] == [
        "  check  queue_is_deep [symptom]",
        "  check  workers_consume [workers-stuck]",
        "  check  disk_is_fast [slow-disk] (only after workers-stuck is ruled in)",
        "  action restart_workers [mitigates workers-stuck]: planned only: runs with "
        "--execute when workers-stuck is ruled in on that host, after confirmation",
        "  action clear_cache [mitigates workers-stuck, slow-disk]: planned only: runs with "
        "--execute when workers-stuck or slow-disk is ruled in on that host, after confirmation",
    ]
    assert "CHECK BODY RAN" not in result.output


def test_no_check_body_and_no_action_runs_even_with_execute(project):
    project.runbook("queue_backlog", QUEUE)
    dry = project.run("run", "queue-backlog", "--dry-run", "--execute", "--yes")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "CHECK BODY RAN" not in dry.stdout + dry.stderr
    assert not list(project.root.glob("*.marker"))
    assert "runs when workers-stuck is ruled in on that host, without confirmation" in dry.stdout
    assert "gated by confirmation" not in dry.stdout  # --yes: nothing asks
    assert "2 actions that change state (restart_workers, clear_cache), run without" in dry.stdout
    # The same command without --dry-run runs the bodies and the actions: the proof can fail.
    real = project.run("run", "queue-backlog", "--execute", "--yes", "-q")
    assert real.returncode == 1, real.stdout + real.stderr
    assert "CHECK BODY RAN" in real.stdout
    assert sorted(p.name for p in project.root.glob("*.marker")) == ["cache.marker", "jobs.marker"]


def test_targets_are_resolved_but_never_contacted(project, silent_listener):
    project.runbook("queue_backlog", QUEUE)
    project.write(
        "hosts.ini",
        f"""
        [web]
        web1 ansible_host=127.0.0.1 ansible_port={silent_listener.port}
        web2 ansible_host=192.0.2.1
        """,
    )
    started = time.monotonic()
    result = project.run(
        "run",
        "queue-backlog",
        "--dry-run",
        "-i",
        "hosts.ini",
        "-H",
        f"web,ssh://nobody@127.0.0.1:{silent_listener.port},local",
        "--json",
        "plan.json",
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert elapsed < 10
    assert PREVIEW.format(hosts="4 hosts") in result.stdout
    time.sleep(0.3)  # a connection attempt would have been accepted by now
    assert silent_listener.clients == []
    plan = json.loads((project.root / "plan.json").read_text())
    port = silent_listener.port
    hosts = [(h["name"], h["uri"]) for h in plan["hosts"]]
    assert [name for name, _ in hosts[:2]] == ["web1", "web2"]
    assert hosts[0][1].startswith("ssh://") and hosts[0][1].endswith(f"@127.0.0.1:{port}")
    assert hosts[1][1].startswith("ssh://") and hosts[1][1].endswith("@192.0.2.1:22")
    assert hosts[2][1] == f"ssh://nobody@127.0.0.1:{port}"
    assert hosts[3][0] == "local"
    assert plan["hosts"][0]["checks"] == ["queue_is_deep", "workers_consume", "disk_is_fast"]


def test_bad_parameters_inventories_and_targets_are_usage_errors(project):
    project.runbook("queue_backlog", QUEUE)
    project.write("bad.ini", "[web\nweb1\n")
    cases = {
        ("--param", "max_depth=many"): "parameter max_depth='many': not a valid int",
        ("--param", "depth=3"): "unknown parameter 'depth'",
        ("-i", "bad.ini"): "bad.ini",
        ("-i", "missing.ini"): "missing.ini",
        ("-H", "docker://web1"): "unknown target 'docker://web1': no backend handles it",
    }
    for args, message in cases.items():
        result = project.invoke("run", "queue-backlog", "--dry-run", *args)
        assert result.exit_code == 4, (args, result.output)
        assert message in result.output, (args, result.output)
        assert "Traceback" not in result.output
    assert not (project.root / "runbook-reports").exists()


def test_lint_findings_exit_1_and_nothing_selected_exits_5(project):
    project.runbook("queue_backlog", QUEUE)
    project.runbook(
        "sloppy",
        """
        from runbook import check

        @check
        def writes(host):
            host.run("rm -rf /var/cache/app")
        """,
    )
    result = project.invoke("run", "sloppy", "--dry-run")
    assert result.exit_code == 1
    assert "  lint   runbooks/sloppy.py:1: docstring: module docstring with a title missing" in (
        result.output
    )
    assert "runbooks/sloppy.py:5: read-only: writes: 'rm -rf /var/cache/app'" in result.output
    result = project.invoke("run", "queue-backlog", "--dry-run", "-k", "nothing")
    assert result.exit_code == 5
    assert "queue-backlog: 0 read-only checks on 1 host" in result.output


def test_the_plan_is_written_as_markdown_and_json(project):
    project.runbook("queue_backlog", QUEUE)
    project.write("runbook.toml", 'report_dir = "plans"\n')
    result = project.invoke(
        "run", "queue-backlog", "--dry-run", "-k", "not disk", "--param", "max_depth=5"
    )
    assert result.exit_code == 0, result.output
    [markdown] = (project.root / "plans").glob("*-queue-backlog-plan.md")
    [data] = (project.root / "plans").glob("*-queue-backlog-plan.json")
    assert f"plan: plans/{markdown.name}" in result.output
    assert f"json: plans/{data.name}" in result.output
    assert oct(markdown.stat().st_mode & 0o777) == "0o600"
    plan = json.loads(data.read_text())
    assert plan["schema"] == "runbook.plan/1"
    assert plan["runbook"]["name"] == "queue-backlog"
    assert (plan["mode"], plan["planned_mode"]) == ("dry-run", "read-only")
    assert plan["exit_code"] == 0
    assert plan["preview"].startswith("2 read-only checks on 1 host; 2 actions")
    assert plan["params"] == {"queue": "jobs", "max_depth": 5, "api_token": "***"}
    assert plan["checks"][1] == {
        "id": "workers_consume",
        "tests": ["workers-stuck"],
        "needs": None,
        "timeout_s": 5,
        "summary": "Workers took a message lately.",
    }
    assert plan["deselected"] == ["disk_is_fast"]
    assert plan["actions"][1]["confirm"] is False
    assert plan["findings"] == []
    text = markdown.read_text()
    assert "# Plan: Queue backlog" in text
    assert "**2 read-only checks on 1 host; 2 actions that change state" in text
    assert "| 2   | workers_consume | workers-stuck |" in text
    assert "Deselected by `-k`: disk_is_fast" in text
    assert "s3cr3t-value" not in text + data.read_text()


def test_the_plan_goes_to_standard_output_with_a_dash(project):
    project.runbook("queue_backlog", QUEUE)
    result = project.run("run", "queue-backlog", "--dry-run", "--json", "-", "--report", "x.md")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["runbook"]["name"] == "queue-backlog"
    assert PREVIEW.format(hosts="1 host") in result.stderr
    assert (project.root / "x.md").read_text().startswith("# Plan: Queue backlog")
    result = project.run("run", "queue-backlog", "--dry-run", "--report", "-", "--json", "p.json")
    assert result.stdout.startswith("# Plan: Queue backlog\n")
    assert json.loads((project.root / "p.json").read_text())["schema"] == "runbook.plan/1"


def test_every_built_in_runbook_dry_runs_cleanly(project):
    result = project.invoke("list", "--json")
    names = [item["name"] for item in json.loads(result.output) if item["source"] == "builtin"]
    assert len(names) >= 7
    for name in names:
        dry = project.invoke("run", name, "--dry-run", "-H", "local,ssh://192.0.2.7")
        assert dry.exit_code == 0, dry.output
        assert "on 2 hosts;" in dry.output.splitlines()[0]
        assert " lint " not in dry.output


def test_a_dry_run_judges_commands_with_the_runs_own_policy(project):
    """A psql read the postgres plugin allows is no finding; a psql write still is."""
    project.runbook(
        "psql_reads",
        '''
        """Psql."""
        from runbook import check

        @check
        def reads(host):
            host.run("psql -Atc %s", "select 1")
            host.run("psql -Atc 'select 1'")
        ''',
    )
    result = project.invoke("run", "psql-reads", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "  lint   " not in result.output
    project.runbook(
        "psql_writes",
        '''
        """Psql."""
        from runbook import check

        @check
        def drops(host):
            host.run("psql -c 'drop table x'")
        ''',
    )
    result = project.invoke("run", "psql-writes", "--dry-run")
    assert result.exit_code == 1
    assert "runbooks/psql_writes.py:6: read-only: drops:" in result.output
