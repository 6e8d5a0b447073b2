"""Hypothesis status from check results, per host and across hosts (DESIGN §3)."""

from __future__ import annotations

import dataclasses

import pytest

from runbook.api import hypothesis
from runbook.outcomes import CommandTimeout
from runbook.outcomes import Inconclusive
from runbook.outcomes import ReadOnlyViolation
from runbook.outcomes import RuleIn
from runbook.outcomes import RuleOut
from runbook.outcomes import Skipped
from runbook.results import CheckResult
from runbook.verdicts import judge
from runbook.verdicts import status_across_hosts
from runbook.verdicts import status_on_host

#: How a check can end, as the exception its call raised (None: it returned).
ENDINGS = {
    "passed": lambda: None,
    "rule_out": lambda: RuleOut("hit ratio 99%"),
    "failed": lambda: AssertionError("stress (pid 4242) uses 99% CPU"),
    "rule_in": lambda: RuleIn("lock wait on orders"),
    "inconclusive": lambda: Inconclusive("no counters"),
    "skipped": lambda: Skipped("no PostgreSQL here"),
    "error": lambda: RuntimeError("boom"),
    "timeout": lambda: CommandTimeout("command timed out after 5s"),
    "blocked": lambda: ReadOnlyViolation("rm -rf /", "'rm' is not on the read-only allowlist"),
}


def result(ending, check="c", host="web1", tests=("h",)):
    return CheckResult.from_call(
        check=check,
        host=host,
        tests=tests,
        exc=ENDINGS[ending](),
        duration_s=0.01,
        started_at=0.0,
    )


@pytest.mark.parametrize(
    ("endings", "status"),
    [
        # Untested: none of its checks ran.
        ([], "untested"),
        (["skipped"], "untested"),
        (["skipped", "skipped"], "untested"),
        # Ruled out: every check that ran ruled it out.
        (["passed"], "ruled_out"),
        (["rule_out"], "ruled_out"),
        (["passed", "rule_out", "passed"], "ruled_out"),
        # A skipped check (not applicable, or a drill-down whose `needs` was not
        # ruled in) does not stop the checks that did run from ruling it out.
        (["passed", "skipped"], "ruled_out"),
        # Ruled in: any check ruled it in, whatever the others did.
        (["failed"], "ruled_in"),
        (["rule_in"], "ruled_in"),
        (["passed", "failed"], "ruled_in"),
        (["rule_out", "rule_in"], "ruled_in"),
        (["error", "failed"], "ruled_in"),
        (["timeout", "rule_in"], "ruled_in"),
        (["blocked", "inconclusive", "failed"], "ruled_in"),
        (["skipped", "rule_in"], "ruled_in"),
        # Inconclusive: none ruled it in, but one errored, timed out, was blocked or said so.
        (["error"], "inconclusive"),
        (["timeout"], "inconclusive"),
        (["blocked"], "inconclusive"),
        (["inconclusive"], "inconclusive"),
        (["passed", "error"], "inconclusive"),
        (["rule_out", "timeout"], "inconclusive"),
        (["passed", "blocked"], "inconclusive"),
        (["inconclusive", "passed"], "inconclusive"),
        (["skipped", "error"], "inconclusive"),
    ],
)
def test_status_on_one_host(endings, status):
    assert (
        status_on_host(result(ending, check=f"c{i}") for i, ending in enumerate(endings)) == status
    )


def test_a_check_abandoned_by_the_runner_counts_as_timed_out():
    # The runner gives up on a hung check and records it like this.
    hung = dataclasses.replace(result("passed"), outcome="timeout", verdict="inconclusive")
    assert status_on_host([result("passed", check="other"), hung]) == "inconclusive"


@pytest.mark.parametrize(
    ("statuses", "status"),
    [
        ([], "untested"),
        (["untested"], "untested"),
        (["untested", "untested"], "untested"),
        (["ruled_out"], "ruled_out"),
        (["ruled_out", "ruled_out", "ruled_out"], "ruled_out"),
        (["ruled_in"], "ruled_in"),
        (["ruled_out", "ruled_in"], "ruled_in"),
        (["untested", "ruled_in"], "ruled_in"),
        (["inconclusive", "ruled_in", "ruled_out"], "ruled_in"),
        (["inconclusive"], "inconclusive"),
        (["ruled_out", "inconclusive"], "inconclusive"),
        (["untested", "inconclusive"], "inconclusive"),
        # Ruled out needs every host: one that was not tested (unreachable, or the
        # check did not apply there) leaves the question open.
        (["ruled_out", "untested"], "inconclusive"),
    ],
)
def test_status_across_hosts(statuses, status):
    assert status_across_hosts(statuses) == status


RUNAWAY = hypothesis("runaway-process", "One process is using most of the CPU")
STEAL = hypothesis("cpu-steal", "The hypervisor is taking CPU time")
SWAP = hypothesis("swap", "The machine is swapping")


def test_ruled_in_on_one_host_is_ruled_in_and_names_that_host():
    results = [
        result("passed", "top_ok", "web1", ("runaway-process",)),
        result("failed", "top_ok", "web2", ("runaway-process",)),
        result("passed", "top_ok", "web3", ("runaway-process",)),
    ]
    (judged,) = judge([RUNAWAY], ["web1", "web2", "web3"], results)
    assert judged.id == "runaway-process"
    assert judged.statement == "One process is using most of the CPU"
    assert judged.status == "ruled_in"
    assert judged.hosts == {"web1": "ruled_out", "web2": "ruled_in", "web3": "ruled_out"}
    assert judged.evidence == ("web2: stress (pid 4242) uses 99% CPU",)


def test_one_host_evidence_is_not_prefixed_with_the_host():
    results = [
        result("rule_in", "locks", "db1", ("runaway-process",)),
        result("failed", "top_ok", "db1", ("runaway-process",)),
    ]
    (judged,) = judge([RUNAWAY], ["db1"], results)
    assert judged.evidence == ("lock wait on orders", "stress (pid 4242) uses 99% CPU")


def test_judge_every_hypothesis_in_order_from_the_checks_that_test_it():
    results = [
        result("passed", "cpu_is_high", "web1", ()),  # symptom check: tests nothing
        result("failed", "cpu_is_high2", "web1", ()),
        result("passed", "top_ok", "web1", ("runaway-process", "cpu-steal")),
        result("error", "steal_ok", "web1", ("cpu-steal",)),
        result("passed", "top_ok", "web2", ("runaway-process", "cpu-steal")),
        result("rule_out", "steal_ok", "web2", ("cpu-steal",)),
    ]
    judged = judge([SWAP, RUNAWAY, STEAL], ["web1", "web2"], results)
    assert [(h.id, h.status) for h in judged] == [
        ("swap", "untested"),
        ("runaway-process", "ruled_out"),
        ("cpu-steal", "inconclusive"),
    ]
    swap, runaway, steal = judged
    assert swap.hosts == {"web1": "untested", "web2": "untested"}
    assert swap.evidence == ()
    assert runaway.evidence == ("web1: top_ok passed", "web2: top_ok passed")
    assert steal.hosts == {"web1": "inconclusive", "web2": "ruled_out"}
    assert steal.evidence == ("web1: RuntimeError: boom", "web2: ruled out")


def test_a_host_without_results_is_untested_there():
    results = [result("rule_out", "top_ok", "web1", ("runaway-process",))]
    (judged,) = judge([RUNAWAY], ["web1", "unreachable"], results)
    assert judged.hosts == {"web1": "ruled_out", "unreachable": "untested"}
    assert judged.status == "inconclusive"
    assert judged.evidence == ("web1: ruled out", "unreachable: untested (no check ran there)")


def test_an_inconclusive_mix_of_hosts_says_why_each_went_untested():
    results = [
        result("rule_out", "top_ok", "web1", ("runaway-process",)),
        dataclasses.replace(
            result("skipped", "top_ok", "web2", ("runaway-process",)),
            message="needs --param port=PORT",
        ),
    ]
    (judged,) = judge([RUNAWAY], ["web1", "web2"], results)
    assert judged.status == "inconclusive"
    assert judged.evidence == ("web1: ruled out", "web2: untested (needs --param port=PORT)")


def test_symptom_checks_carry_no_verdict():
    for ending in ENDINGS:
        assert result(ending, tests=()).verdict is None
