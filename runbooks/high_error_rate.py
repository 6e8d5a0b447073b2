"""High error rate.

Symptoms: the application log fills with ERROR lines and exceptions, clients see 5xx
responses or failed requests, alerts on the error rate fire. The checks count errors by
type in a recent window against the baseline before it (on the target: the log is never
copied), tell whether they began just after the service (re)started, as after a deploy,
and whether a dependency is refusing connections. They read ``log_file``, or the journal
of the systemd unit ``journal_unit`` when it is set.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import shlex
from typing import TYPE_CHECKING
from typing import Any

from runbook import action
from runbook import check
from runbook import evidence
from runbook import hookimpl
from runbook import hypothesis
from runbook import rule_in
from runbook import severity_from_findings
from runbook import skip

if TYPE_CHECKING:
    from runbook.plugins.http import HttpClient
    from runbook.plugins.logs import ErrorCounts
    from runbook.plugins.logs import GroupBy
    from runbook.plugins.logs import LogCounter

    from runbook import Host

PARAMS = {
    # The application log on the target (timestamps "YYYY-MM-DD HH:MM:SS" at line start).
    "log_file": str,
    # A systemd unit whose journal to count instead of log_file; "" reads log_file.
    "journal_unit": "",
    # The recent window, in minutes, whose errors are counted.
    "window_minutes": 5.0,
    # The baseline window just before it, in minutes.
    "baseline_minutes": 60.0,
    # The window's error rate must exceed the baseline's this many times to be a spike ...
    "spike_factor": 5.0,
    # ... and hold at least this many errors.
    "min_errors": 20,
    # An extended regular expression (awk) that an error line matches.
    "error_pattern": "ERROR|CRITICAL|FATAL|Exception",
    # The service's process name (pgrep -x; its start time is the restart); "" skips it.
    "service": "",
    # A log line marking a (re)start, as an awk ERE; "" skips the log's markers.
    "restart_pattern": "Starting|Started|starting up|Listening on",
    # Errors beginning within this many minutes after a (re)start are blamed on it.
    "deploy_minutes": 10.0,
    # The dependency as host:port, probed from the target; "" skips the probe.
    "dependency": "",
    # A log line saying a connection was refused, as an awk ERE.
    "refused_pattern": "[Cc]onnection refused|ECONNREFUSED",
    # Refused-connection lines in the window from which the dependency is blamed.
    "refused_min": 1,
    # The command that rolls the service back (split like a shell would, run without one).
    "rollback_command": "",
}
TAGS = ["errors", "logs", "deploy", "linux"]
SEVERITY = "P2"

spike = hypothesis("error-spike", "Errors in the recent window are far above the baseline")
deploy = hypothesis("recent-deploy", "The errors began just after a deploy or restart")
refusing = hypothesis("dependency-refusing", "A dependency is refusing connections")

# ``pgrep -x`` compares with the kernel's process name, which keeps 15 characters.
_COMM_LENGTH = 15
# A key of the counts grouped by peer that is an address (else the line named none).
_PEER = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_][A-Za-z0-9_.-]*):\d+$")


def _counts(logs: LogCounter, params: Any, pattern: str, by: GroupBy = "type") -> ErrorCounts:
    """Count ``pattern`` in the log (or journal unit) over the window and baseline.

    Skip when there is no log to read.
    """
    if params.journal_unit:
        return logs.journal_error_counts(
            params.journal_unit,
            since_minutes=params.window_minutes,
            baseline_minutes=params.baseline_minutes,
            pattern=pattern,
            by=by,
        )
    log_file = params.get("log_file")
    if not log_file:
        skip("needs --param log_file=PATH (or --param journal_unit=UNIT)")
    try:
        return logs.error_counts(
            log_file,
            since_minutes=params.window_minutes,
            baseline_minutes=params.baseline_minutes,
            pattern=pattern,
            by=by,
        )
    except FileNotFoundError:
        skip(f"{log_file} does not exist on this target")


def _when(moment: dt.datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def _count_rows(counts: ErrorCounts, column: str = "type") -> list[dict[str, Any]]:
    return [
        {
            column: item.key,
            f"last {counts.since_minutes:g} min": item.window,
            f"{counts.baseline_minutes:g} min before": item.baseline,
            "no timestamp": item.unknown_time,
            "first": _when(item.first),
            "last": _when(item.last),
        }
        for item in counts.types[:20]
    ]


def _scan_note(counts: ErrorCounts) -> str:
    return (
        f"{counts.path}: {counts.lines_scanned} lines ({counts.bytes_scanned} bytes) read on "
        f"the target; {counts.output_bytes} bytes of counts came back. Window "
        f"{_when(counts.window_start)} .. {_when(counts.now)} (target's local time)."
    )


@check
def error_rate_is_low(logs: LogCounter, params: Any) -> str:
    """Symptom: fail when the window holds at least ``min_errors`` errors."""
    counts = _counts(logs, params, params.error_pattern)
    evidence("Errors by type", _count_rows(counts) or "none")
    assert counts.window_total < params.min_errors, (
        f"{counts.window_total} errors in the last {params.window_minutes:g} minutes "
        f"({counts.rate_per_minute:.1f}/min) in {counts.path}"
    )
    return (
        f"{counts.window_total} errors in the last {params.window_minutes:g} minutes "
        f"in {counts.path}, threshold {params.min_errors}"
    )


@check(tests=spike)
def errors_not_above_baseline(logs: LogCounter, params: Any) -> str:
    """Rule ``error-spike`` out unless the window's rate is ``spike_factor`` x the baseline's."""
    counts = _counts(logs, params, params.error_pattern)
    evidence("Errors by type and window", _count_rows(counts) or "none")
    evidence("Scan", _scan_note(counts))
    if counts.window_total >= params.min_errors and counts.spike_factor >= params.spike_factor:
        top = ", ".join(f"{t.key} {t.window}" for t in counts.types[:3] if t.window)
        rule_in(
            f"{counts.window_total} errors in the last {params.window_minutes:g} min "
            f"({counts.rate_per_minute:.1f}/min) vs {counts.baseline_total} in the "
            f"{params.baseline_minutes:g} min before ({counts.baseline_rate_per_minute:.2f}/min) "
            f"in {counts.path}: {top}"
        )
    factor = (
        "none before" if math.isinf(counts.spike_factor) else f"{counts.spike_factor:.1f}x the rate"
    )
    return (
        f"{counts.window_total} errors in the last {params.window_minutes:g} min vs "
        f"{counts.baseline_total} in the {params.baseline_minutes:g} min before ({factor}); "
        f"a spike is {params.spike_factor:g}x and {params.min_errors} errors"
    )


def _service_starts(host: Host, name: str, now: dt.datetime) -> list[dict[str, Any]]:
    """Return the processes named ``name`` with their start time on the target's clock."""
    found = host.run(["pgrep", "-x", name[:_COMM_LENGTH]])
    if found.exit_status not in (0, 1):
        raise RuntimeError(f"pgrep failed on {host.name}: {found.stderr.strip()}")
    pids = found.stdout.split()
    if not pids:
        return []
    listing = host.run(["ps", "-ww", "-o", "pid=,etimes=,args=", "-p", ",".join(pids)])
    rows = []
    for line in listing.stdout.splitlines():
        fields = line.split(None, 2)
        if len(fields) >= 2 and fields[1].isdigit():
            started = now - dt.timedelta(seconds=int(fields[1]))
            args = fields[2] if len(fields) > 2 else ""
            rows.append({"pid": int(fields[0]), "started": started, "args": args[:120]})
    return rows


@check(tests=deploy)
def errors_predate_the_last_restart(logs: LogCounter, host: Host, params: Any) -> str:
    """Rule ``recent-deploy`` out unless the first error came soon after a (re)start.

    The (re)start is the newest start of a ``service`` process or the newest line
    matching ``restart_pattern`` in the log.
    """
    if not params.service and not params.restart_pattern:
        skip("needs --param service=PROCESS or --param restart_pattern=ERE")
    counts = _counts(logs, params, params.error_pattern)
    starts: list[tuple[dt.datetime, str]] = []
    if params.service:
        processes = _service_starts(host, params.service, counts.now)
        evidence(
            f"Processes named {params.service[:_COMM_LENGTH]}",
            [{**row, "started": _when(row["started"])} for row in processes] or "none",
        )
        starts += [(row["started"], f"{params.service} (pid {row['pid']})") for row in processes]
    if params.restart_pattern:
        markers = _counts(logs, params, params.restart_pattern, by="match")
        for item in markers.types:
            if item.last is not None:
                starts.append((item.last, f"log line {item.key!r}"))
    first = counts.first
    if first is None:
        evidence("First error in the window", "none")
        return f"no error in the last {params.window_minutes:g} min to blame on a (re)start"
    before = [(moment, what) for moment, what in starts if moment <= first]
    evidence(
        "Restarts and the first error",
        [{"event": what, "time": _when(moment)} for moment, what in sorted(starts)]
        + [{"event": "first error in the window", "time": _when(first)}],
    )
    if not starts:
        return f"the first error in the window ({_when(first)}) follows no (re)start found"
    if not before:
        moment, what = min(starts)
        return (
            f"the first error in the window ({_when(first)}) came before "
            f"{what} started at {_when(moment)}"
        )
    moment, what = max(before)
    after = (first - moment).total_seconds() / 60
    if after <= params.deploy_minutes:
        rule_in(
            f"the first error in the window ({_when(first)}) came {after:.1f} min after "
            f"{what} started at {_when(moment)} (within {params.deploy_minutes:g} min)"
        )
    return (
        f"the first error in the window ({_when(first)}) came {after:.1f} min after "
        f"{what} started, threshold {params.deploy_minutes:g} min"
    )


def _dependency(params: Any) -> tuple[str, int]:
    host, colon, port = str(params.dependency).rpartition(":")
    if not colon or not host or not port.isdigit():
        raise ValueError(f"dependency must be host:port, not {params.dependency!r}")
    return host.strip("[]"), int(port)


@check(tests=refusing)
def log_shows_no_refused_connections(logs: LogCounter, params: Any) -> str:
    """Rule ``dependency-refusing`` out unless refused connections fill the window.

    The verdict names the dependencies the refused lines name (``host:port``).
    """
    counts = _counts(logs, params, params.refused_pattern, by="peer")
    evidence("Refused connections in the log, by peer", _count_rows(counts, "peer") or "none")
    if counts.window_total >= params.refused_min:
        peers = [item for item in counts.types if item.window and _PEER.match(item.key)]
        if peers:
            shown = [
                item.key if item.window == counts.window_total else f"{item.key} ({item.window})"
                for item in peers[:3]
            ]
            target = " to " + ", ".join(shown)
        elif params.dependency:
            target = f" to {params.dependency} (the lines name no address)"
        else:
            target = " (the lines name no host:port)"
        rule_in(
            f"{counts.window_total} refused connections{target} in the last "
            f"{params.window_minutes:g} min in {counts.path} (first {_when(counts.first)}; "
            f"threshold {params.refused_min})"
        )
    return (
        f"{counts.window_total} refused connections in the last {params.window_minutes:g} min "
        f"in {counts.path}, threshold {params.refused_min}"
    )


@check(tests=refusing, timeout=30)
def dependency_accepts_connections(http: HttpClient, host: Host, params: Any) -> str:
    """Rule ``dependency-refusing`` out when the target can connect to ``dependency``."""
    if not params.dependency:
        skip("needs --param dependency=HOST:PORT")
    dep_host, dep_port = _dependency(params)
    connected = http.tcp_connect(dep_host, dep_port)
    evidence("TCP connect", [{"to": params.dependency, "from": host.name, "connected": connected}])
    if not connected:
        rule_in(f"{params.dependency} refuses connections from {host.name}")
    return f"{params.dependency} accepts connections from {host.name}"


@action(mitigates=[spike, refusing])
def restart_service(host: Host, params: Any) -> None:
    """Restart ``service`` (systemd): it clears a stuck state or reconnects to a dependency."""
    if not params.service:
        raise RuntimeError("no service configured: set --param service=UNIT to restart it")
    host.restart_service(params.service)


@action(mitigates=deploy)
def roll_back_deploy(host: Host, params: Any) -> None:
    """Roll the last deploy back with ``rollback_command``; there is no generic way."""
    if not params.rollback_command:
        raise RuntimeError(
            "no rollback_command configured: roll the last deploy back with your deploy "
            "tool, or set --param rollback_command='...' to let this action run it"
        )
    result = host.run(shlex.split(params.rollback_command))
    evidence("Rollback", result)
    if not result.succeeded:
        raise RuntimeError(f"rollback failed: {result.stderr.strip()}")


#: The severity each ruled-in hypothesis suggests (P0..P4 as in docs/incidents.md).
#: One level less when the symptom check ran and did not confirm the symptom; nothing
#: ruled in: P2 when errors fill the window, else none.
SEVERITY_BY_FINDING = {
    "error-spike": "P2",
    "recent-deploy": "P2",
    "dependency-refusing": "P2",
}


@hookimpl
def runbook_suggest_severity(result: Any) -> str | None:
    """Suggest a severity from what this run found; None when it found nothing."""
    return severity_from_findings(result, SEVERITY_BY_FINDING, symptom_only="P2")
