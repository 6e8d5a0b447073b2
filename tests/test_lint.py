"""``runbook lint``: every rule, through the real command, with file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runbook.authoring.lint import RULES
from runbook.collect import library_dir
from runbook.model import runbook_name

CLEAN = '''
    """Queue backlog.

    Symptoms: messages pile up.
    """
    from runbook import action, check, hypothesis

    PARAMS = {"queue": "jobs", "max_depth": 100, "ratio": 0.5, "strict": True, "hosts": ["a"]}

    stuck = hypothesis("workers-stuck", "The workers stopped consuming")
    slow = hypothesis("slow-disk", "The disk is slow")

    def depth(host, params):
        return host.run("wc -l %s", params.queue)

    @check(tests=stuck)
    def workers_consume(host, params):
        depth(host, params)
        host.run(["ps", "-o", "pid=", "-p", params.queue])

    @check(tests=slow, needs=stuck)
    def disk_is_fast(host):
        host.run("cat /proc/diskstats | grep sda")

    @action(mitigates=stuck)
    def restart_workers(host, params):
        host.run("systemctl restart %s", params.queue)
'''


def lint_json(project, *names):
    result = project.invoke("lint", "--json", *names)
    return result.exit_code, json.loads(result.output)


def rules_at(data):
    return {(f["path"], f["line"], f["rule"]) for f in data["findings"]}


def test_a_clean_runbook_lints_clean(project):
    project.runbook("queue_backlog", CLEAN)
    result = project.invoke("lint", "queue-backlog")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "1 runbook(s) clean"


def test_every_built_in_runbook_lints_clean(project):
    names = sorted(runbook_name(p) for p in library_dir().glob("[!_]*.py"))
    assert len(names) >= 7
    code, data = lint_json(project, *names)
    assert code == 0, data["findings"]
    assert data == {"schema": "runbook.lint/1", "runbooks": names, "findings": []}


def test_structure_rules_name_file_line_and_runbook(project):
    project.runbook(
        "sloppy",
        """
        from runbook import action, check, hypothesis

        lonely = hypothesis("lonely", "Nobody tests me")
        other = hypothesis("other", "Other")
        again = hypothesis("other", "Other")
        deep = hypothesis("deep", "Deep")

        @check(tests=other, needs=deep)
        def too_early(host):
            pass

        @check(tests=deep)
        def uses_ghost(host, ghost):
            pass

        @action
        def does_something(host):
            pass
        """,
    )
    code, data = lint_json(project, "sloppy")
    assert code == 1
    path = "runbooks/sloppy.py"
    assert rules_at(data) == {
        (path, 1, "docstring"),
        (path, 3, "hypothesis-tested"),
        (path, 5, "hypothesis-unique"),
        (path, 8, "needs"),
        (path, 12, "fixtures"),
        (path, 16, "action-mitigates"),
    }
    assert {f["runbook"] for f in data["findings"]} == {"sloppy"}
    messages = " | ".join(f["message"] for f in data["findings"])
    assert "hypothesis 'lonely' is not tested by any check" in messages
    assert "hypothesis id 'other' is declared again (first on line 4)" in messages
    assert "too_early needs 'deep', but no check before it tests 'deep'" in messages
    assert "uses_ghost: unknown fixture 'ghost'" in messages
    assert "action 'does_something' mitigates no hypothesis" in messages


def test_the_table_has_location_runbook_rule_and_message(project):
    project.runbook("queue_backlog", CLEAN)
    untitled = CLEAN.replace('"""Queue backlog.\n\n    Symptoms: messages pile up.\n    """', "")
    project.runbook("untitled", untitled)
    result = project.invoke("lint")
    assert result.exit_code == 1
    header, rule, row = result.output.splitlines()[:3]
    assert header.split() == ["where", "runbook", "rule", "finding"]
    assert set(rule) <= {"-", " "}
    assert row.split()[:3] == ["runbooks/untitled.py:1", "untitled", "docstring"]
    assert "1 finding(s) in" in result.output
    assert "queue_backlog" not in result.output


def test_two_hypotheses_with_one_id_are_a_finding_not_a_crash(project):
    project.runbook(
        "twice",
        '''
        """Twice."""
        from runbook import check, hypothesis

        a = hypothesis("same", "First meaning")
        b = hypothesis("same", "Second meaning")

        @check(tests=[a, b])
        def looks(host):
            pass
        ''',
    )
    code, data = lint_json(project, "twice")
    assert code == 1
    assert rules_at(data) == {("runbooks/twice.py", 5, "hypothesis-unique")}


def test_a_syntax_error_is_a_finding_and_the_others_are_still_linted(project):
    project.runbook("queue_backlog", CLEAN)
    project.runbook("broken", '"""Broken."""\nfrom runbook import check\n\ndef (:\n    pass\n')
    project.runbook("lonely", CLEAN.replace("@check(tests=slow, needs=stuck)", "@check"))
    code, data = lint_json(project)
    assert code == 1
    assert ("runbooks/broken.py", 4, "imports") in rules_at(data)
    assert ("runbooks/lonely.py", 10, "hypothesis-tested") in rules_at(data)
    assert {"broken", "lonely", "queue-backlog", "high-cpu"} <= set(data["runbooks"])
    # Named, the broken runbook is still a finding (exit 1), not a usage error.
    code, data = lint_json(project, "broken", "queue-backlog")
    assert code == 1
    assert rules_at(data) == {("runbooks/broken.py", 4, "imports")}
    assert "SyntaxError" in data["findings"][0]["message"]


def test_an_unknown_name_is_a_usage_error(project):
    project.runbook("queue_backlog", CLEAN)
    result = project.invoke("lint", "queue-backlgo")
    assert result.exit_code == 4
    assert "unknown runbook 'queue-backlgo'. Did you mean: queue-backlog?" in result.output


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ('{"limits": {"a": 1}}', "default {'a': 1} is a dict; --param sets only str, int"),
        ('{"nothing": None}', "default None is a NoneType"),
        ('{"ports": [80, 443]}', "default [80, 443] must be a list of str"),
        ('{"bad name": 1}', "'bad name': not a valid name"),
    ],
)
def test_params_whose_defaults_do_not_coerce(project, params, message):
    project.runbook("queue_backlog", CLEAN.replace("PARAMS = {", f"PARAMS = {params[:-1]}, "))
    code, data = lint_json(project, "queue-backlog")
    assert code == 1
    [finding] = data["findings"]
    assert (finding["rule"], finding["line"]) == ("params", 7)
    assert message in finding["message"]


READ_ONLY_CHECKS = '''
    """Writes."""
    from runbook import action, check, hypothesis

    PARAMS = {"service": "nginx", "path": "/var/log/app.log"}
    RESTART = "systemctl restart nginx"
    h = hypothesis("h", "H")

    def restart(host):
        return host.run(RESTART)

    @check(tests=h)
    def writes(host, params):
        host.run("rm -rf /var/tmp/cache")
        host.run("systemctl restart %s", params.service)
        host.run(["kill", "-9", params.service])
        host.run(f"truncate -s 0 {params.path}")
        host.run("cat /etc/hosts > /tmp/copy")
        restart(host)
        fix(host)

    @check(tests=h)
    def only_reads(host, params):
        host.run("systemctl %s nginx", params.service)
        host.run(["tail", "-n", "5", params.path])
        host.run("grep -c error %s", params.path)
        host.run(params.service)
        host.run(RESTART.replace("restart", "status"))

    @check(tests=h, allow_commands=["rm -rf /var/tmp/cache"])
    def allowed(host):
        host.run("rm -rf /var/tmp/cache")

    @action(mitigates=h)
    def fix(host):
        host.run("rm -rf /")
'''


def test_read_only_rule_finds_commands_the_guard_would_refuse(project):
    project.runbook("writes", READ_ONLY_CHECKS)
    code, data = lint_json(project, "writes")
    assert code == 1
    found = {f["line"]: f["message"] for f in data["findings"]}
    assert {f["rule"] for f in data["findings"]} == {"read-only"}
    assert sorted(found) == [9, 13, 14, 15, 16, 17]
    assert found[13] == "writes: 'rm -rf /var/tmp/cache': 'rm' is not on the read-only allowlist"
    assert found[14].startswith("writes: 'systemctl restart %s': systemctl restart")
    assert found[15].startswith("writes: 'kill -9 ...': 'kill' is not on the read-only")
    assert found[16].startswith("writes: 'truncate -s 0 {...}': 'truncate' is not")
    assert "output redirection '>' to '/tmp/copy'" in found[17]
    assert found[9].startswith("writes (via restart): 'systemctl restart nginx'")


def test_read_only_rule_honours_the_configured_allowlist(project):
    project.runbook("writes", READ_ONLY_CHECKS)
    project.write(
        "runbook.toml", '[read_only]\nallow = ["rm -rf /var/tmp/cache", "kill", "truncate"]\n'
    )
    code, data = lint_json(project, "writes")
    assert code == 1
    assert sorted(f["line"] for f in data["findings"]) == [9, 14, 17]


def test_rules_are_documented():
    text = (Path(__file__).parent.parent / "docs" / "cli.md").read_text(encoding="utf-8")
    for rule in RULES:
        assert f"| `{rule}` |" in text, rule


@pytest.mark.parametrize(
    "default",
    ["app", "myservice", "changeme", "http://example.com/health", "db.example.org:5432",
     "svc.invalid", "<host>"],
)  # fmt: skip
def test_a_made_up_default_for_an_operator_value_is_a_placeholder_finding(project, default):
    params = f'{{"service": {default!r}}}'
    project.runbook("queue_backlog", CLEAN.replace("PARAMS = {", f"PARAMS = {params[:-1]}, "))
    code, data = lint_json(project, "queue-backlog")
    assert code == 1
    [finding] = data["findings"]
    assert (finding["rule"], finding["line"]) == ("placeholder-param", 7)
    assert f"parameter service: default {default!r} stands in for" in finding["message"]
    assert "declare it {'service': str}" in finding["message"]


def test_a_parameter_declared_by_its_type_lints_clean_and_a_bad_type_does_not(project):
    good = CLEAN.replace('"queue": "jobs"', '"queue": str, "port": int')
    project.runbook("queue_backlog", good)
    code, data = lint_json(project, "queue-backlog")
    assert (code, data["findings"]) == (0, [])
    project.runbook("queue_backlog", CLEAN.replace('"queue": "jobs"', '"queue": dict'))
    code, data = lint_json(project, "queue-backlog")
    [finding] = data["findings"]
    assert (code, finding["rule"]) == (1, "params")
    assert "dict is not a type --param can set" in finding["message"]


def test_real_values_are_not_placeholders(project):
    # A team's own runbook names its own service: that is a default, not a stand-in.
    real = '{"service": "checkout", "log": "/var/log/checkout/app.log", "url": "http://127.0.0.1:8080/health"}'
    project.runbook("queue_backlog", CLEAN.replace("PARAMS = {", f"PARAMS = {real[:-1]}, "))
    code, data = lint_json(project, "queue-backlog")
    assert (code, data["findings"]) == (0, [])


PSQL_CHECKS = '''
    """Psql."""
    from runbook import check, hypothesis

    h = hypothesis("h", "H")


    @check(tests=h)
    def reads(host):
        host.run("psql -Atc %s", "select 1")
        host.run("psql -Atc 'select 1'")


    @check(tests=h)
    def drops(host):
        host.run("psql -c 'drop table x'")
'''


def test_read_only_rule_asks_the_plugin_policies_as_the_run_does(project):
    """The postgres plugin allows a psql read at run time: lint agrees, and still finds a write."""
    project.runbook("psql_reads", PSQL_CHECKS)
    code, data = lint_json(project, "psql-reads")
    assert code == 1
    assert [(f["line"], f["rule"]) for f in data["findings"]] == [(15, "read-only")]
    assert data["findings"][0]["message"].startswith("drops: \"psql -c 'drop table x'\": psql -c")
