"""Result records: how a check's call ends, and the JSON result (DESIGN §8)."""

from __future__ import annotations

import json
import textwrap

import pytest

from runbook.importing import import_file
from runbook.outcomes import CommandTimeout
from runbook.outcomes import Inconclusive
from runbook.outcomes import ReadOnlyViolation
from runbook.outcomes import RuleIn
from runbook.outcomes import RuleOut
from runbook.outcomes import Skipped
from runbook.results import SCHEMA
from runbook.results import ActionResult
from runbook.results import CheckResult
from runbook.results import HostResult
from runbook.results import HypothesisResult
from runbook.results import RunResult
from runbook.steps import CommandRecord
from runbook.steps import Evidence

CHECKS = '''
    """Checks that end every way a check can end."""
    from runbook import inconclusive, rule_in, rule_out, skip


    def passes(host):
        pass


    def asserts_with_message(host):
        usage = 97
        assert usage < 90, f"/var is {usage}% full"


    def asserts_bare(host):
        usage = 97
        assert usage < 90


    def asserts_over_lines(host):
        usage = 97
        assert (
            usage
            < 90
        )


    def rules_in(host):
        rule_in("lock wait on orders")


    def rules_out(host):
        rule_out("hit ratio 99%")


    def is_inconclusive(host):
        inconclusive("no counters on this host")


    def skips(host):
        skip("no PostgreSQL on this host")


    def crashes(host):
        return parse({"load": "high"})


    def parse(data):
        return float(data["load"])


    def recurses(host, depth=0):
        if depth == 20:
            raise LookupError("deep down")
        recurses(host, depth + 1)
'''


@pytest.fixture
def checks(tmp_path):
    path = tmp_path / "endings.py"
    path.write_text(textwrap.dedent(CHECKS).lstrip("\n"))
    return import_file(path)


def call(function, tests=("h",)):
    try:
        function(None)
    except BaseException as exc:  # every ending is an outcome, as in the runner
        error = exc
    else:
        error = None
    return CheckResult.from_call(
        check=function.__name__,
        host="web1",
        tests=tests,
        exc=error,
        duration_s=0.25,
        started_at=1_700_000_000.0,
    )


@pytest.mark.parametrize(
    ("name", "outcome", "verdict", "message"),
    [
        ("passes", "passed", "ruled_out", ""),
        ("asserts_with_message", "failed", "ruled_in", "/var is 97% full"),
        ("asserts_bare", "failed", "ruled_in", "failed: assert usage < 90"),
        ("rules_in", "failed", "ruled_in", "lock wait on orders"),
        ("rules_out", "passed", "ruled_out", "hit ratio 99%"),
        ("is_inconclusive", "passed", "inconclusive", "no counters on this host"),
        ("skips", "skipped", None, "no PostgreSQL on this host"),
        (
            "crashes",
            "error",
            "inconclusive",
            "ValueError: could not convert string to float: 'high'",
        ),
    ],
)
def test_from_call_for_every_ending_of_a_check(checks, name, outcome, verdict, message):
    result = call(getattr(checks, name))
    assert (result.outcome, result.verdict, result.message) == (outcome, verdict, message)
    assert (result.check, result.host, result.tests) == (name, "web1", ("h",))
    assert (result.duration_s, result.started_at) == (0.25, 1_700_000_000.0)
    assert (result.traceback is not None) is (outcome == "error")


def test_a_bare_assert_over_several_lines_shows_the_whole_condition(checks):
    message = call(checks.asserts_over_lines).message
    assert "usage" in message
    assert "< 90" in message


def test_an_error_keeps_a_short_traceback_that_points_at_the_bug(checks):
    crashed = call(checks.crashes)
    assert "in parse" in crashed.traceback
    assert 'return float(data["load"])' in crashed.traceback
    assert crashed.traceback.endswith("ValueError: could not convert string to float: 'high'")

    deep = call(checks.recurses)
    assert deep.message == "LookupError: deep down"
    assert deep.traceback.count("in recurses") <= 4
    assert 'raise LookupError("deep down")' in deep.traceback


@pytest.mark.parametrize(
    ("exc", "outcome", "verdict", "message"),
    [
        (RuleIn(), "failed", "ruled_in", ""),
        (RuleOut(), "passed", "ruled_out", ""),
        (Inconclusive("x"), "passed", "inconclusive", "x"),
        (Skipped(), "skipped", None, ""),
        (AssertionError(), "failed", "ruled_in", "assertion failed"),  # raised, never thrown
        (
            CommandTimeout("command timed out after 5s"),
            "timeout",
            "inconclusive",
            "command timed out after 5s",
        ),
        (
            ReadOnlyViolation("rm -rf /", "'rm' is not on the read-only allowlist", "allow it"),
            "blocked",
            "inconclusive",
            "refused 'rm -rf /': 'rm' is not on the read-only allowlist (allow it)",
        ),
        (KeyError("load"), "error", "inconclusive", "KeyError: 'load'"),
        (SystemExit(3), "error", "inconclusive", "SystemExit: 3"),  # sys.exit() in a check
    ],
)
def test_from_call_for_exceptions_raised_by_the_framework(exc, outcome, verdict, message):
    result = CheckResult.from_call(
        check="c", host="web1", tests=("h",), exc=exc, duration_s=0.0, started_at=0.0
    )
    assert (result.outcome, result.verdict, result.message) == (outcome, verdict, message)


@pytest.mark.parametrize("name", ["passes", "asserts_bare", "rules_in", "crashes", "skips"])
def test_a_symptom_check_has_an_outcome_but_no_verdict(checks, name):
    result = call(getattr(checks, name), tests=())
    assert result.verdict is None
    assert result.is_symptom
    assert result.outcome == call(getattr(checks, name)).outcome


#: The JSON example of DESIGN §8, verbatim: every key in it is a public contract.
DESIGN_EXAMPLE = """
{
  "schema": "runbook.result/1",
  "runbook": {"name": "high-cpu", "title": "High CPU usage"},
  "mode": "read-only",
  "incident": null, "severity": null, "operator": "alice@laptop",
  "started_at": "2026-11-22T03:00:01Z", "finished_at": "2026-11-22T03:00:04Z",
  "duration_s": 3.1, "exit_code": 1,
  "hosts": [{"name": "web1", "uri": "ssh://web1:22", "status": "ok", "error": null}],
  "hypotheses": [{"id": "runaway-process", "statement": "...", "status": "ruled_in",
                  "hosts": {"web1": "ruled_in"}, "evidence": ["stress (pid 4242) uses 99% CPU"]}],
  "checks": [{"id": "no_process_dominates", "host": "web1", "outcome": "failed",
              "tests": ["runaway-process"], "message": "...", "duration_s": 0.05,
              "evidence": [{"title": "Top processes by CPU", "body": "..."}]}],
  "actions": [{"id": "restart_service", "host": "web1", "mitigates": ["runaway-process"],
               "status": "planned", "message": "read-only mode"}],
  "commands": [{"host": "web1", "check": "no_process_dominates", "command": "ps ...",
                "exit_status": 0, "duration_s": 0.01, "blocked": false}],
  "report": "runbook-reports/20261122T030001Z-high-cpu.md"
}
"""

START = 1795316401.0  # 2026-11-22T03:00:01Z


def run_result():
    ps = CommandRecord("web1", "no_process_dominates", "ps ...", 0, 0.01, False, START + 0.2)
    uptime = CommandRecord("web1", "no_process_dominates", "uptime", 0, 0.01, False, START + 0.1)
    restart = CommandRecord(
        "web1", "restart_service", "systemctl restart app", 0, 0.5, False, START + 2.0
    )
    return RunResult(
        runbook={"name": "high-cpu", "title": "High CPU usage"},
        mode="read-only",
        incident=None,
        severity=None,
        operator="alice@laptop",
        started_at=START,
        finished_at=START + 3.1,
        exit_code=1,
        hosts=(HostResult("web1", "ssh://web1:22", "ok"),),
        hypotheses=(
            HypothesisResult(
                "runaway-process",
                "...",
                "ruled_in",
                {"web1": "ruled_in"},
                ("stress (pid 4242) uses 99% CPU",),
            ),
        ),
        checks=(
            CheckResult(
                "no_process_dominates",
                "web1",
                "failed",
                "ruled_in",
                ("runaway-process",),
                "...",
                0.05,
                START + 0.1,
                (Evidence("Top processes by CPU", "..."),),
                (ps, uptime),
            ),
        ),
        actions=(
            ActionResult(
                "restart_service",
                "web1",
                ("runaway-process",),
                "planned",
                "read-only mode",
                START + 2.0,
                commands=(restart,),
            ),
        ),
        params={"service": "app", "db_password": "***"},
        report="runbook-reports/20261122T030001Z-high-cpu.md",
        json=None,
    )


def missing_keys(example, actual, where="$"):
    """Return the paths of keys in ``example`` that ``actual`` lacks, recursively."""
    missing = []
    if isinstance(example, dict):
        for key, value in example.items():
            if key not in actual:
                missing.append(f"{where}.{key}")
            else:
                missing += missing_keys(value, actual[key], f"{where}.{key}")
    elif isinstance(example, list) and example and isinstance(example[0], dict):
        assert actual, f"{where} is empty in the result under test"
        missing += missing_keys(example[0], actual[0], f"{where}[0]")
    return missing


def test_to_dict_has_every_key_of_the_design_example():
    assert missing_keys(json.loads(DESIGN_EXAMPLE), run_result().to_dict()) == []


def test_to_dict_values_match_the_design_example():
    data = json.loads(json.dumps(run_result().to_dict()))
    example = json.loads(DESIGN_EXAMPLE)
    for key in ("schema", "runbook", "mode", "incident", "severity", "operator", "exit_code"):
        assert data[key] == example[key], key
    assert data["schema"] == SCHEMA
    assert data["started_at"] == "2026-11-22T03:00:01Z"
    assert data["finished_at"] == "2026-11-22T03:00:04Z"
    assert data["duration_s"] == 3.1
    assert data["hosts"] == example["hosts"]
    assert data["hypotheses"] == example["hypotheses"]
    check = {key: data["checks"][0][key] for key in example["checks"][0]}
    assert check == example["checks"][0]
    action = {key: data["actions"][0][key] for key in example["actions"][0]}
    assert action == example["actions"][0]
    assert data["report"] == example["report"]
    assert data["params"] == {"service": "app", "db_password": "***"}


def test_commands_of_checks_and_actions_are_listed_in_the_order_they_started():
    commands = run_result().to_dict()["commands"]
    assert [(c["check"], c["command"]) for c in commands] == [
        ("no_process_dominates", "uptime"),
        ("no_process_dominates", "ps ..."),
        ("restart_service", "systemctl restart app"),
    ]
    example = json.loads(DESIGN_EXAMPLE)["commands"][0]
    assert {key: commands[1][key] for key in example} == example
    assert commands[0]["started_at"] == "2026-11-22T03:00:01.100Z"


def test_a_blocked_command_says_why():
    blocked = CommandRecord(
        "web1", "c", "rm -rf /", None, 0.0, True, START, "'rm' is not on the read-only allowlist"
    )
    result = run_result()
    check = CheckResult("c", "web1", "blocked", "inconclusive", (), "", 0.0, START, (), (blocked,))
    data = RunResult(**{**_fields(result), "checks": (check,), "actions": ()}).to_dict()
    assert data["commands"] == [
        {
            "host": "web1",
            "check": "c",
            "command": "rm -rf /",
            "exit_status": None,
            "duration_s": 0.0,
            "blocked": True,
            "reason": "'rm' is not on the read-only allowlist",
            "started_at": "2026-11-22T03:00:01.000Z",
        }
    ]


def _fields(record):
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


def _failing_assert(used: float, limit: float, message: bool) -> None:
    # This module is a test module: pytest rewrites its asserts, as it does the built-in
    # runbooks' when runbook's own pytest plugin is installed.
    if message:
        assert used < limit, f"disk is {used:.0f}% full"
    assert used < limit


def test_assertion_messages_leave_out_pytests_explanation():
    from runbook.results import assertion_message

    with pytest.raises(AssertionError) as with_message:
        _failing_assert(97.0, 90.0, message=True)
    assert "\nassert " in str(with_message.value)  # rewritten: pytest added its explanation
    assert assertion_message(with_message.value) == "disk is 97% full"
    with pytest.raises(AssertionError) as bare:
        _failing_assert(97.0, 90.0, message=False)
    assert assertion_message(bare.value) == "failed: assert used < limit"
