"""Decide each hypothesis's status from the checks that tested it.

Per host: *ruled in* if any of its checks ruled it in; *inconclusive* if none
did but one errored, timed out, was blocked or said inconclusive; *ruled out*
if its checks that ran all ruled it out; *untested* if none of them ran
(deselected or skipped). Across hosts: ruled in anywhere wins; ruled out needs
every host to rule it out; untested everywhere stays untested; any other mix is
inconclusive.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Sequence

from runbook.api import Hypothesis
from runbook.results import CheckResult
from runbook.results import HypothesisResult
from runbook.results import Status


def status_on_host(results: Iterable[CheckResult]) -> Status:
    """Return a hypothesis's status on one host from the results of its checks there."""
    verdicts = {result.verdict for result in results if result.verdict is not None}
    if "ruled_in" in verdicts:
        return "ruled_in"
    if "inconclusive" in verdicts:
        return "inconclusive"
    if "ruled_out" in verdicts:
        return "ruled_out"
    return "untested"


def status_across_hosts(statuses: Iterable[Status]) -> Status:
    """Combine per-host statuses into one."""
    found = set(statuses)
    if "ruled_in" in found:
        return "ruled_in"
    if not found or found == {"untested"}:
        return "untested"
    if found == {"ruled_out"}:
        return "ruled_out"
    return "inconclusive"


def judge(
    hypotheses: Sequence[Hypothesis], hosts: Sequence[str], results: Sequence[CheckResult]
) -> tuple[HypothesisResult, ...]:
    """Return the status of every hypothesis on every host and overall, with evidence."""
    judged = []
    for item in hypotheses:
        tested = [result for result in results if item.id in result.tests]
        per_host: dict[str, Status] = {
            host: status_on_host(r for r in tested if r.host == host) for host in hosts
        }
        status = status_across_hosts(per_host.values())
        judged.append(
            HypothesisResult(
                item.id,
                item.statement,
                status,
                per_host,
                _evidence(status, tested, hosts) + _unsettled(status, per_host, tested),
            )
        )
    return tuple(judged)


def _unsettled(
    status: Status, per_host: dict[str, Status], tested: list[CheckResult]
) -> tuple[str, ...]:
    """Why a mix of hosts is inconclusive: where it was ruled out, where untested and why."""
    if status != "inconclusive" or len(per_host) < 2:
        return ()
    lines = []
    for host, on_host in per_host.items():
        if on_host == "ruled_out":
            lines.append(f"{host}: ruled out")
        elif on_host == "untested":
            skipped = [r.message for r in tested if r.host == host and r.message]
            why = skipped[0] if skipped else "no check ran there"
            lines.append(f"{host}: untested ({why})")
    return tuple(lines)


def _evidence(status: Status, tested: list[CheckResult], hosts: Sequence[str]) -> tuple[str, ...]:
    if status == "ruled_in":
        deciding = [r for r in tested if r.verdict == "ruled_in"]
    elif status == "inconclusive":
        deciding = [r for r in tested if r.verdict == "inconclusive"]
    else:
        deciding = [r for r in tested if r.verdict == "ruled_out"]
    several = len(hosts) > 1
    lines = []
    for result in deciding:
        message = result.message or f"{result.check} {result.outcome}"
        lines.append(f"{result.host}: {message}" if several else message)
    return tuple(lines)
