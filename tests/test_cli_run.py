"""End-to-end tests of ``runbook run``: outcomes, verdicts, actions, files, exit codes."""

from __future__ import annotations

import json
import re
import stat
import time

import pytest

MIXED = '''
    """Checkout is slow.

    Symptoms: checkout requests take seconds.
    """
    from runbook import action, check, evidence, hypothesis, inconclusive, rule_in, rule_out, skip

    PARAMS = {"limit": 5, "service": "shop"}

    db = hypothesis("db-slow", "The database is slow")
    cache = hypothesis("cache-cold", "The cache is cold")
    net = hypothesis("network", "The network drops packets")
    dns = hypothesis("dns", "DNS is slow")

    @check
    def checkout_is_slow(host):
        evidence("probe", host.run("echo %s", "slow checkout"))

    @check(tests=db)
    def db_latency_ok(host, params):
        evidence("latency", [{"query": "select 1", "ms": 900}])
        assert params.limit > 10, f"db latency over budget (limit {params.limit})"

    @check(tests=cache)
    def cache_hit_ratio_ok(host):
        rule_out("hit ratio 99%")

    @check(tests=net)
    def packet_loss_measured(host):
        inconclusive("no counters on this host")

    @check(tests=dns)
    def dns_not_applicable(host):
        skip("no resolver configured")

    @check(tests=db, needs=db)
    def db_locks(host):
        rule_in("lock wait on orders")

    @check(tests=cache, needs=cache)
    def cache_drill_down(host):
        raise RuntimeError("never runs")

    @action(mitigates=db)
    def restart_db(host, params):
        """Restart the database."""
        host.run("echo restart %s", params.service)

    @action(mitigates=cache)
    def warm_cache(host):
        host.run("true")
'''


def test_outcomes_and_hypothesis_statuses(project):
    project.runbook("checkout_slow", MIXED)
    result, data = project.run_json("checkout-slow")
    assert result.exit_code == 1, result.output
    statuses = {h["id"]: h["status"] for h in data["hypotheses"]}
    assert statuses == {
        "db-slow": "ruled_in",
        "cache-cold": "ruled_out",
        "network": "inconclusive",
        "dns": "untested",
    }
    outcomes = {c["id"]: c["outcome"] for c in data["checks"]}
    assert outcomes == {
        "checkout_is_slow": "passed",
        "db_latency_ok": "failed",
        "cache_hit_ratio_ok": "passed",
        "packet_loss_measured": "passed",
        "dns_not_applicable": "skipped",
        "db_locks": "failed",
        "cache_drill_down": "skipped",
    }
    db = next(h for h in data["hypotheses"] if h["id"] == "db-slow")
    assert "db latency over budget (limit 5)" in db["evidence"]
    assert "lock wait on orders" in db["evidence"]
    assert db["hosts"] == {"local": "ruled_in"}
    drill = next(c for c in data["checks"] if c["id"] == "cache_drill_down")
    assert drill["message"] == "needs cache-cold ruled in first"
    actions = {a["id"]: (a["status"], a["mitigates"]) for a in data["actions"]}
    assert actions == {
        "restart_db": ("planned", ["db-slow"]),
        "warm_cache": ("not_needed", ["cache-cold"]),
    }


def test_json_result_has_every_key_of_the_schema(project):
    project.runbook("checkout_slow", MIXED)
    _, data = project.run_json("checkout-slow")
    assert data["schema"] == "runbook.result/1"
    top = {
        "runbook",
        "mode",
        "incident",
        "severity",
        "operator",
        "started_at",
        "finished_at",
        "duration_s",
        "exit_code",
        "hosts",
        "hypotheses",
        "checks",
        "actions",
        "commands",
        "report",
    }
    assert top <= data.keys()
    assert data["runbook"] == {
        "name": "checkout-slow",
        "title": "Checkout is slow",
        "description": "Symptoms: checkout requests take seconds.",
        "source": "runbooks/checkout_slow.py",
    }
    assert data["mode"] == "read-only"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["started_at"])
    assert data["hosts"][0].keys() >= {"name", "uri", "status", "error"}
    assert data["hosts"][0]["status"] == "ok"
    assert data["hypotheses"][0].keys() >= {"id", "statement", "status", "hosts", "evidence"}
    assert data["checks"][0].keys() >= {
        "id",
        "host",
        "outcome",
        "tests",
        "message",
        "duration_s",
        "evidence",
    }
    assert data["actions"][0].keys() >= {"id", "host", "mitigates", "status", "message"}
    command = data["commands"][0]
    assert command.keys() >= {"host", "check", "command", "exit_status", "duration_s", "blocked"}
    assert command["command"] == "echo 'slow checkout'"
    assert command["check"] == "checkout_is_slow"
    assert data["checks"][0]["evidence"][0]["title"] == "probe"
    assert "slow checkout" in data["checks"][0]["evidence"][0]["body"]
    assert data["report"].endswith("checkout-slow.md")


def test_healthy_runbook_exits_zero(project):
    project.runbook(
        "fine",
        '''
        """All good."""
        from runbook import check, hypothesis

        h = hypothesis("broken", "Something is broken")

        @check(tests=h)
        def nothing_broken(host):
            assert host.run(["true"]).succeeded
        ''',
    )
    result, data = project.run_json("fine")
    assert result.exit_code == 0, result.output
    assert data["exit_code"] == 0
    assert data["hypotheses"][0]["status"] == "ruled_out"


def test_default_report_files_are_timestamped_and_private(project):
    project.runbook("checkout_slow", MIXED)
    result = project.invoke("run", "checkout-slow")
    assert result.exit_code == 1
    reports = sorted((project.root / "runbook-reports").iterdir())
    assert [p.suffix for p in reports] == [".json", ".md"]
    for path in reports:
        assert re.fullmatch(r"\d{8}T\d{6}Z-checkout-slow\.(md|json)", path.name)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    md = next(p for p in reports if p.suffix == ".md")
    assert f"report: runbook-reports/{md.name}" in result.output
    data = json.loads(reports[0].read_text())
    assert data["report"] == f"runbook-reports/{md.name}"


def test_runs_in_the_same_second_keep_their_own_reports(project, monkeypatch):
    monkeypatch.setattr("runbook.cli.run.file_stamp", lambda: "20261122T030001Z")
    project.runbook("checkout_slow", MIXED)
    first, second = (project.invoke("run", "checkout-slow") for _ in range(2))
    assert first.exit_code == second.exit_code == 1
    names = sorted(path.name for path in (project.root / "runbook-reports").iterdir())
    stem = "20261122T030001Z-checkout-slow"
    assert names == [f"{stem}-2.json", f"{stem}-2.md", f"{stem}.json", f"{stem}.md"]
    assert f"report: runbook-reports/{stem}.md" in first.output
    assert f"report: runbook-reports/{stem}-2.md" in second.output
    data = json.loads((project.root / "runbook-reports" / f"{stem}-2.json").read_text())
    assert data["report"] == f"runbook-reports/{stem}-2.md"


def test_a_run_that_does_not_start_leaves_no_empty_report(project):
    project.runbook("checkout_slow", MIXED)
    result = project.invoke("run", "checkout-slow", "--param", "nonsense=1")
    assert result.exit_code == 4
    reports = project.root / "runbook-reports"
    assert not reports.exists() or not list(reports.iterdir())


def test_markdown_report_sections(project):
    project.runbook("checkout_slow", MIXED)
    project.run_json("checkout-slow")
    text = (project.root / "checkout-slow.md").read_text()
    for heading in (
        "# Checkout is slow",
        "## Symptoms",
        "## Hypotheses",
        "## Checks",
        "## Actions",
        "## Timeline",
        "## Evidence",
        "## Commands run",
        "## Next steps",
    ):
        assert heading in text
    assert re.search(r"\| \*\*db-slow\*\*: The database is slow +\| ruled in ", text)
    assert "ruled out" in text and "inconclusive" in text and "untested" in text
    assert re.search(r"\| restart_db +\| local +\| planned ", text)
    assert "`echo 'slow checkout'`" in text


def test_report_to_stdout_keeps_progress_off_stdout(project):
    project.runbook("checkout_slow", MIXED)
    done = project.run(
        "run", "checkout-slow", "--report", "-", "--json", str(project.root / "r.json")
    )
    assert done.returncode == 1
    assert done.stdout.startswith("# Checkout is slow")
    assert "FAILED" in done.stderr and "FAILED" not in done.stdout


def test_report_rerender_from_json(project):
    project.runbook("checkout_slow", MIXED)
    project.run_json("checkout-slow")
    original = (project.root / "checkout-slow.md").read_text()
    result = project.invoke("report", "checkout-slow.json")
    assert result.exit_code == 0
    assert result.output == original
    template = project.write("custom.md.j2", "Custom {{ runbook.name }}: {{ result.exit_code }}\n")
    result = project.invoke(
        "report", "checkout-slow.json", "--template", str(template), "-o", "x.md"
    )
    assert result.exit_code == 0
    assert (project.root / "x.md").read_text() == "Custom checkout-slow: 1\n"
    assert stat.S_IMODE((project.root / "x.md").stat().st_mode) == 0o600


def test_report_of_a_file_that_is_not_a_result(project):
    project.write("bad.json", '{"hello": 1}')
    result = project.invoke("report", "bad.json")
    assert result.exit_code == 4
    assert "not a runbook result" in result.output


def test_keyword_selection(project):
    project.runbook("checkout_slow", MIXED)
    _, data = project.run_json("checkout-slow", "-k", "cache and not drill")
    assert [c["id"] for c in data["checks"]] == ["cache_hit_ratio_ok"]
    statuses = {h["id"]: h["status"] for h in data["hypotheses"]}
    assert statuses["cache-cold"] == "ruled_out"
    assert statuses["db-slow"] == "untested"


def test_nothing_selected_exits_5(project):
    project.runbook("checkout_slow", MIXED)
    result = project.invoke("run", "checkout-slow", "-k", "no-such-check")
    assert result.exit_code == 5


def test_params_are_coerced(project):
    project.runbook("checkout_slow", MIXED)
    _result, data = project.run_json("checkout-slow", "--param", "limit=50")
    statuses = {c["id"]: c["outcome"] for c in data["checks"]}
    assert statuses["db_latency_ok"] == "passed"
    assert data["params"]["limit"] == 50


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--param", "limit=lots"], "parameter limit='lots': not a valid int"),
        (
            ["--param", "limt=3"],
            "unknown parameter 'limt'. Did you mean 'limit'? Known parameters: limit, service",
        ),
        (["--param", "limit"], "expected KEY=VALUE"),
        (["--severity", "P9"], "Invalid value for '--severity'"),
        (["--bogus"], "No such option '--bogus'"),
        (["-k", "a and"], "-k: cannot parse expression"),
    ],
)
def test_usage_errors_exit_4_with_one_line(project, args, message):
    project.runbook("checkout_slow", MIXED)
    result = project.invoke("run", "checkout-slow", *args)
    assert result.exit_code == 4
    assert message in result.output
    assert "Traceback" not in result.output


def test_unknown_runbook_suggests_close_names(project):
    project.runbook("checkout_slow", MIXED)
    result = project.invoke("run", "checkout-slwo")
    assert result.exit_code == 4
    assert "unknown runbook 'checkout-slwo'. Did you mean: checkout-slow?" in result.output


def test_unknown_fixture_is_a_collection_error(project):
    project.runbook(
        "typo",
        '''
        """Typo."""
        from runbook import check

        @check
        def uses_missing(host, databse):
            pass
        ''',
    )
    result = project.invoke("run", "typo")
    assert result.exit_code == 4
    assert "typo.py:4: uses_missing: unknown fixture 'databse'" in result.output


def test_broken_runbook_named_while_others_still_list_and_run(project):
    project.runbook("checkout_slow", MIXED)
    project.runbook("broken", '"""Broken."""\nfrom runbook import check\n\ndef oops(:\n    pass\n')
    listed = project.invoke("list")
    assert listed.exit_code == 4
    assert "checkout-slow" in listed.output
    assert re.search(r"broken\.py:4: SyntaxError", listed.output)
    assert "Traceback" not in listed.output
    assert project.invoke("run", "checkout-slow", "-q").exit_code == 1
    result = project.invoke("run", "broken")
    assert result.exit_code == 4
    assert "runbook 'broken' cannot be loaded" in result.output


def test_check_timeout_does_not_hang_the_run(project):
    project.runbook(
        "hang",
        '''
        """Hangs."""
        import time
        from runbook import check, hypothesis

        h = hypothesis("stuck", "Something is stuck")

        @check(tests=h, timeout=0.3)
        def sleeps_in_python(host):
            time.sleep(30)

        @check(tests=h)
        def sleeps_in_a_command(host):
            host.run("sleep 30")

        @check(tests=h)
        def still_runs(host):
            pass
        ''',
    )
    started = time.monotonic()
    result, data = project.run_json("hang", "--timeout", "0.5")
    assert time.monotonic() - started < 10
    assert [c["outcome"] for c in data["checks"]] == ["timeout", "timeout", "passed"]
    assert data["hypotheses"][0]["status"] == "inconclusive"
    assert result.exit_code == 1
    assert "did not finish within 0.3s" in data["checks"][0]["message"]


def test_error_in_check_is_recorded_with_a_short_traceback(project):
    project.runbook(
        "crash",
        '''
        """Crashes."""
        from runbook import check, hypothesis

        h = hypothesis("h", "H")

        @check(tests=h)
        def divides(host):
            return 1 / 0
        ''',
    )
    result, data = project.run_json("crash")
    check = data["checks"][0]
    assert check["outcome"] == "error"
    assert check["message"] == "ZeroDivisionError: division by zero"
    assert "return 1 / 0" in check["traceback"]
    assert data["hypotheses"][0]["status"] == "inconclusive"
    assert result.exit_code == 1


def test_read_only_violation_blocks_the_check(project, tmp_path):
    target = tmp_path / "precious"
    target.write_text("keep me")
    project.runbook(
        "sneaky",
        f'''
        """Sneaky."""
        from runbook import check, hypothesis

        h = hypothesis("h", "H")

        @check(tests=h)
        def deletes(host):
            host.run("cat /etc/hostname; rm -f %s", {str(target)!r})
        ''',
    )
    result, data = project.run_json("sneaky")
    assert target.read_text() == "keep me"
    check = data["checks"][0]
    assert check["outcome"] == "blocked"
    assert "'rm' is not on the read-only allowlist" in check["message"]
    assert "allow_commands" in check["message"]
    assert data["commands"][0]["blocked"] is True
    assert result.exit_code == 1


ACTIONS = '''
    """Disk fills up."""
    from pathlib import Path
    from runbook import action, check, hypothesis

    full = hypothesis("disk-full", "The disk is full")

    @check(tests=full)
    def disk_has_room(host):
        assert False, "disk 99% full"

    @action(mitigates=full)
    def rotate_logs(host, run_info):
        """Rotate the logs."""
        host.run("touch %s", "{marker}")
'''


def test_execute_with_yes_runs_the_action(project):
    marker = project.root / "rotated"
    project.runbook("disk", ACTIONS.format(marker=marker))
    result, data = project.run_json("disk", "--execute", "--yes")
    assert marker.exists()
    assert data["mode"] == "execute"
    assert data["actions"][0]["status"] == "executed"
    assert any(c["command"].startswith("touch") for c in data["commands"])
    assert result.exit_code == 1


def test_execute_without_tty_or_yes_is_declined(project):
    marker = project.root / "rotated"
    project.runbook("disk", ACTIONS.format(marker=marker))
    _result, data = project.run_json("disk", "--execute")
    assert not marker.exists()
    action = data["actions"][0]
    assert action["status"] == "declined"
    assert "pass --yes" in action["message"]


def test_read_only_mode_never_runs_actions(project):
    marker = project.root / "rotated"
    project.runbook("disk", ACTIONS.format(marker=marker))
    _, data = project.run_json("disk", "--yes")
    assert not marker.exists()
    assert data["actions"][0]["status"] == "planned"


def test_failing_action_is_recorded(project):
    project.runbook(
        "fails",
        '''
        """Fails."""
        from runbook import action, check, hypothesis

        h = hypothesis("h", "H")

        @check(tests=h)
        def bad(host):
            assert False, "bad"

        @action(mitigates=h, confirm=False)
        def fix(host):
            raise RuntimeError("could not fix")
        ''',
    )
    _, data = project.run_json("fails", "--execute")
    assert data["actions"][0]["status"] == "failed"
    assert "could not fix" in data["actions"][0]["message"]


def test_fixtures_scopes_and_teardown(project):
    project.runbook(
        "fix",
        '''
        """Fixtures."""
        from runbook import check, fixture, hypothesis

        h = hypothesis("h", "H")

        def note(text):
            print("fixture:", text)  # files are refused to fixture code in read-only mode

        @fixture(scope="run")
        def session():
            note("run setup")
            yield "S"
            note("run teardown")

        @fixture(scope="host")
        def per_host(host, session):
            note("host setup " + host.name)
            return session + "-" + host.name

        @fixture
        def per_check(per_host, params):
            yield per_host + "-" + params.suffix
            note("check teardown")

        PARAMS = {"suffix": "x"}

        @check(tests=h)
        def one(per_check, run_info):
            assert per_check == "S-local-x"
            assert run_info.mode == "read-only"

        @check(tests=h)
        def two(per_check):
            assert per_check == "S-local-x"
        ''',
    )
    # Fixture code runs under the read-only guard, like the checks that request it.
    result, data = project.run_json("fix")
    assert [c["outcome"] for c in data["checks"]] == ["passed", "passed"], result.output
    notes = [line for line in result.output.splitlines() if line.startswith("fixture: ")]
    assert [note.removeprefix("fixture: ") for note in notes] == [
        "run setup",
        "host setup local",
        "check teardown",
        "check teardown",
        "run teardown",
    ]


def test_ctrl_c_writes_partial_report_and_exits_2(project):
    project.runbook(
        "slow",
        '''
        """Slow."""
        from runbook import check, hypothesis

        h = hypothesis("h", "H")

        @check(tests=h)
        def quick(host):
            pass

        @check(tests=h)
        def slow(host):
            host.run("sleep 30")
        ''',
    )
    code, out, err, _ = project.interrupt(
        "run", "slow", "--json", "out.json", "--report", "out.md", after="[1/2] PASSED"
    )
    assert code == 2, out + err
    data = json.loads((project.root / "out.json").read_text())
    assert data["exit_code"] == 2
    assert data["interrupted"] is True
    assert [c["id"] for c in data["checks"]] == ["quick"]
    report = (project.root / "out.md").read_text()
    assert "Partial report" in report
    assert "Traceback" not in err


def test_every_read_only_extension_shows_in_the_report(project):
    project.write("runbook.toml", '[read_only]\nallow = ["nginx -T"]\n')
    project.runbook(
        "widened",
        '''
        """Widened."""
        from runbook import check, hypothesis

        h = hypothesis("h", "H")

        @check(tests=h, allow_commands=["pg_lsclusters"])
        def clusters(host):
            pass
        ''',
    )
    _, data = project.run_json("widened")
    assert data["read_only_extensions"] == [
        "runbook.toml [read_only] allow: nginx -T",
        "@check clusters allow_commands: pg_lsclusters",
    ]
    report = (project.root / "widened.md").read_text()
    assert "## Read-only extensions" in report
    assert "- @check clusters allow_commands: pg_lsclusters" in report


def test_a_run_without_extensions_says_nothing_about_them(project):
    project.runbook("plain", "from runbook import check\n\n@check\ndef c(host):\n    pass\n")
    _, data = project.run_json("plain")
    assert data["read_only_extensions"] == []
    assert "Read-only extensions" not in (project.root / "plain.md").read_text()


NOT_HERE = '''
    """Not here."""
    from runbook import check, hypothesis, skip

    queue = hypothesis("queue-backlog", "The queue is backed up")

    @check(tests=queue)
    def queue_is_drained(host):
        skip("no queue on this host")
'''


def test_a_run_that_tested_nothing_exits_5_and_says_so(project):
    project.runbook("not_here", NOT_HERE)
    result, data = project.run_json("not-here")
    assert result.exit_code == 5, result.output
    assert data["exit_code"] == 5
    assert data["hypotheses"][0]["status"] == "untested"
    assert any(w.startswith("nothing was tested") for w in data["warnings"])
    assert "nothing was tested" in result.output
    assert "nothing was tested" in (project.root / "not-here.md").read_text()


def test_quiet_runs_still_show_warnings(project):
    project.runbook("not_here", NOT_HERE)
    result, _ = project.run_json("not-here", "-q")
    assert result.exit_code == 5
    assert "warning: nothing was tested" in result.output


def test_an_empty_host_list_is_a_usage_error(project):
    project.runbook("not_here", NOT_HERE)
    for hosts in ("", " , "):
        result = project.invoke("run", "not-here", "-H", hosts)
        assert result.exit_code == 4, result.output
        assert "-H/--host names no target" in result.output
        assert "Traceback" not in result.output
    assert not (project.root / "runbook-reports").exists()


MEASURED = '''
    """Measured."""

    from runbook import check, hypothesis

    busy = hypothesis("runaway-process", "One process eats the CPU")


    @check
    def cpu_is_busy():
        return "CPU 12% busy"


    @check(tests=busy)
    def no_process_dominates():
        return "busiest process stress 2% CPU, limit 80%"


    @check(tests=busy)
    def returns_a_number():
        return 42
'''


def test_a_passed_check_says_what_it_measured(project):
    project.runbook("measured", MEASURED)
    result, data = project.run_json("measured")
    messages = {check["id"]: check["message"] for check in data["checks"]}
    assert messages == {
        "cpu_is_busy": "CPU 12% busy",
        "no_process_dominates": "busiest process stress 2% CPU, limit 80%",
        "returns_a_number": "",  # only a string is a description
    }
    [hypothesis] = data["hypotheses"]
    assert "busiest process stress 2% CPU, limit 80%" in hypothesis["evidence"]
    assert "CPU 12% busy" in result.output  # a symptom's finding, on the terminal too
    assert "busiest process stress 2% CPU, limit 80%" in result.output  # the hypotheses table
    report = (project.root / "measured.md").read_text()
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in report.splitlines()]
    assert ["cpu_is_busy", "local", "passed", "CPU 12% busy"] in rows  # the Symptoms table
