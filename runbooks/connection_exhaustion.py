"""Connection exhaustion.

Symptoms: clients see "connection refused" or connect timeouts, a service logs EMFILE
("too many open files") or cannot accept, a connection pool is exhausted. The checks
tell too many TCP connections (or a pile-up of TIME_WAIT sockets) from a process that
is near its open-files limit, and PostgreSQL near ``max_connections``.

The PostgreSQL check reads ``pg_stat_activity`` through the ``postgres`` fixture
(connecting from this machine to ``pg_dsn``, read-only): client connections against
the slots ordinary roles may use (``max_connections`` minus
``superuser_reserved_connections``). Without a ``pg_dsn`` parameter it is skipped.
Without root, only the login user's own processes' descriptors can be counted: the
open-files check then says inconclusive for the others instead of ruling them out.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING
from typing import Any

from runbook import action
from runbook import check
from runbook import evidence
from runbook import hookimpl
from runbook import hypothesis
from runbook import inconclusive
from runbook import rule_in
from runbook import severity_from_findings
from runbook import skip

if TYPE_CHECKING:
    from runbook.plugins.network import NetworkHelpers
    from runbook.plugins.postgres import PostgresClient

    from runbook import Host

PARAMS = {
    # TCP sockets (any state but LISTEN) above which there are too many connections.
    "connections_threshold": 10000,
    # Sockets in TIME-WAIT above which they pile up (ephemeral ports run out) ...
    "time_wait_threshold": 5000,
    # ... or above this percent of the ephemeral port range, when that is smaller.
    "time_wait_ports_percent": 50.0,
    # Percent of its open-files soft limit at which a process is near it.
    "fd_percent": 90.0,
    # How many endpoints and processes the evidence tables list.
    "rows_listed": 10,
    # A PostgreSQL connection string; "" skips the max_connections check.
    "pg_dsn": "",
    # Percent of the non-reserved connection slots in use at which PostgreSQL is near its limit.
    "pg_connections_percent": 80.0,
    # The service that restart_service restarts (one holding the connections or files).
    "service": "",
}
# The DSN may hold a password: redacted in reports, JSON, cassettes and the audit log.
SECRETS = ["pg_dsn"]
TAGS = ["network", "tcp", "file-descriptors", "postgresql", "linux"]
SEVERITY = "P1"

connections = hypothesis(
    "too-many-connections", "Too many TCP connections are open, or TIME_WAIT sockets pile up"
)
fd_limit = hypothesis("fd-limit", "A process is near its open-files limit (EMFILE)")
pg_max_connections = hypothesis("postgres-max-connections", "PostgreSQL is near max_connections")


def _top(counter: Counter[str], limit: int, column: str) -> list[dict[str, Any]]:
    return [{column: key, "sockets": count} for key, count in counter.most_common(limit)]


def _most(counter: Counter[str], many: int = 1) -> str:
    return ", ".join(f"{key} ({count})" for key, count in counter.most_common(many))


@check
def connections_are_accepted(host: Host, params: Any) -> str:
    """Symptom: fail when a listener's accept queue is full or the system is out of files."""
    listeners = host.listening_ports()
    full = [row for row in listeners if row.is_queue_full]
    evidence(
        "Listening TCP sockets: accept queue",
        [
            {
                "listener": f"{row.address}:{row.port}",
                "queued": row.queued,
                "backlog": row.backlog,
                "process": row.process,
            }
            for row in listeners
        ]
        or "none",
    )
    allocated, _, maximum = host.read_text("/proc/sys/fs/file-nr").split()
    evidence(
        "System-wide file handles",
        [{"allocated": int(allocated), "max": int(maximum)}],
    )
    assert not full, "accept queue full on " + ", ".join(
        f"{row.address}:{row.port} ({row.queued}/{row.backlog})" for row in full
    )
    assert int(allocated) < params.fd_percent / 100 * int(maximum), (
        f"{allocated} of {maximum} system-wide file handles are allocated"
    )
    handles = f"{allocated} of {maximum} file handles, limit {params.fd_percent:g}%"
    if not listeners:
        return f"no TCP listener; {handles}"
    fullest = max(listeners, key=lambda row: row.queued / max(row.backlog, 1))
    if not fullest.queued:
        return f"no connection waits in the accept queues of {len(listeners)} listeners; {handles}"
    return (
        f"fullest accept queue {fullest.queued}/{fullest.backlog} on "
        f"{fullest.address}:{fullest.port}; {handles}"
    )


@check(tests=connections)
def tcp_connections_within_limits(host: Host, params: Any) -> str:
    """Rule ``too-many-connections`` out when TCP and TIME-WAIT sockets stay under thresholds."""
    sockets = [row for row in host.tcp_connections() if row.state != "LISTEN"]
    states = Counter(row.state for row in sockets)
    locals_ = Counter(row.local for row in sockets)
    peers = Counter(row.peer for row in sockets)
    owners = Counter(row.process for row in sockets if row.process)
    waiting = [row for row in sockets if row.state == "TIME-WAIT"]
    limit = params.rows_listed
    evidence("TCP sockets by state", _top(states, limit, "state") or "none")
    evidence("Top local endpoints", _top(locals_, limit, "local") or "none")
    evidence("Top remote endpoints", _top(peers, limit, "remote") or "none")
    evidence("Top processes by sockets", _top(owners, limit, "process") or "none (not shown)")
    problems = []
    if len(sockets) > params.connections_threshold:
        problem = (
            f"{len(sockets)} TCP connections (threshold {params.connections_threshold}): "
            + ", ".join(f"{count} {state}" for state, count in states.most_common(4))
            + f"; top local {_most(locals_)}, top remote {_most(peers)}"
        )
        if owners:
            problem += f"; held most by {_most(owners)}"
        problems.append(problem)
    ports = _ephemeral_ports(host)
    wait_limit = min(params.time_wait_threshold, int(params.time_wait_ports_percent / 100 * ports))
    if len(waiting) > wait_limit:
        waits = Counter(row.peer for row in waiting)
        problems.append(
            f"{len(waiting)} sockets in TIME-WAIT (threshold {wait_limit}; {ports} ephemeral "
            f"ports), most to {_most(waits, 3)}"
        )
    assert not problems, "; ".join(problems)
    return (
        f"{len(sockets)} TCP connections, threshold {params.connections_threshold}; "
        f"{len(waiting)} in TIME-WAIT, threshold {wait_limit}"
    )


def _ephemeral_ports(host: Host) -> int:
    """Return how many local ports outgoing connections may use (ip_local_port_range)."""
    low, high = host.read_text("/proc/sys/net/ipv4/ip_local_port_range").split()[:2]
    return int(high) - int(low) + 1


@check(tests=fd_limit)
def processes_below_open_files_limit(net: NetworkHelpers, params: Any) -> str:
    """Rule ``fd-limit`` out when every process uses under ``fd_percent`` of its soft limit."""
    scan = net.open_files_scan()
    usage = [row for row in scan.processes if row.soft_limit]
    evidence(
        "Processes closest to their open-files limit",
        [
            {
                "pid": row.pid,
                "user": row.user,
                "command": row.command,
                "open_fds": row.count,
                "soft_limit": row.soft_limit,
                "percent": round(row.percent, 1),
            }
            for row in usage[: params.rows_listed]
        ]
        or "none",
    )
    near = [row for row in usage if row.percent >= params.fd_percent]
    if near:
        rule_in(
            "; ".join(
                f"{row.command or '?'} (pid {row.pid}) has {row.count} files open, "
                f"{row.percent:.0f}% of its limit of {row.soft_limit}"
                f" (threshold {params.fd_percent:g}%)"
                for row in near[:3]
            )
        )
    if scan.unreadable:
        unreadable = scan.unreadable
        evidence("Processes whose open files could not be read", "\n".join(unreadable))
        many = len(unreadable)
        inconclusive(
            f"no readable process is near its open-files limit, but the descriptors of "
            f"{many} process{'es' if many > 1 else ''} could not be read "
            f"({', '.join(unreadable[:3])}{', ...' if many > 3 else ''}); run as root to see them"
        )
    if not usage:
        return f"none of {len(scan.processes)} processes has an open-files limit"
    closest = usage[0]
    return (
        f"{closest.count} of {closest.soft_limit} open files in {closest.command or '?'} "
        f"(pid {closest.pid}), the closest to its limit; threshold {params.fd_percent:g}%"
    )


_PG_CLIENTS = (
    "SELECT coalesce(nullif(application_name, ''), '(none)') AS application,"
    " coalesce(usename::text, '(none)') AS username,"
    " coalesce(client_addr::text, 'local') AS client, count(*) AS n"
    " FROM pg_stat_activity WHERE backend_type = 'client backend'"
    " GROUP BY 1, 2, 3"
)


def _pg_top(rows: list[dict[str, Any]], key: str, limit: int) -> Counter[str]:
    counter: Counter[str] = Counter()
    for row in rows:
        counter[str(row[key])] += int(row["n"])
    return Counter(dict(counter.most_common(limit)))


@check(tests=pg_max_connections)
def postgres_below_max_connections(postgres: PostgresClient, params: Any) -> str:
    """Rule ``postgres-max-connections`` in at ``pg_connections_percent`` of the free slots.

    The slots are ``max_connections`` minus ``superuser_reserved_connections``: the
    connections ordinary roles may open before PostgreSQL refuses them.
    """
    if not params.pg_dsn:
        skip("needs --param pg_dsn=DSN")
    usage = postgres.connections()
    usable = max(usage.max_connections - usage.reserved, 1)
    percent = 100.0 * usage.total / usable
    evidence(
        "PostgreSQL client connections",
        [
            {
                "server": postgres.where,
                "connections": usage.total,
                "max_connections": usage.max_connections,
                "superuser_reserved": usage.reserved,
                "usable_slots": usable,
                "percent": round(percent, 1),
            }
        ],
    )
    evidence(
        "PostgreSQL connections by state",
        [{"state": state, "connections": n} for state, n in usage.by_state.items()],
    )
    clients = postgres.query(_PG_CLIENTS)
    limit = params.rows_listed
    tops = {
        "application": _pg_top(clients, "application", limit),
        "user": _pg_top(clients, "username", limit),
        "client": _pg_top(clients, "client", limit),
    }
    for column, counter in tops.items():
        evidence(
            f"Top PostgreSQL {column}s by connections",
            [{column: key, "connections": n} for key, n in counter.most_common(limit)] or "none",
        )
    if percent >= params.pg_connections_percent:
        states = ", ".join(f"{n} {state}" for state, n in usage.by_state.items())
        rule_in(
            f"{usage.total} of {usable} connection slots in use on {postgres.where}"
            f" ({percent:.0f}%, threshold {params.pg_connections_percent:g}%;"
            f" max_connections {usage.max_connections} minus {usage.reserved} reserved"
            f" for superusers): {states}; top application {_most(tops['application'])},"
            f" user {_most(tops['user'])}, client {_most(tops['client'])}"
        )
    return (
        f"{usage.total} of {usable} connection slots in use on {postgres.where}"
        f" ({percent:.0f}%), threshold {params.pg_connections_percent:g}%"
    )


@action(mitigates=[connections, fd_limit])
def restart_service(host: Host, params: Any) -> None:
    """Restart ``service``, the one the checks named, so it drops its connections and files."""
    if not params.service:
        skip("set the service parameter to the service of a process the checks named")
    host.restart_service(params.service)


#: The severity each ruled-in hypothesis suggests (P0..P4 as in docs/incidents.md):
#: P1 when connections are refused (the symptom).
#: One level less when the symptom check ran and did not confirm the symptom; nothing
#: ruled in: P1 when connections are refused, else none.
SEVERITY_BY_FINDING = {
    "too-many-connections": "P2",
    "fd-limit": "P2",
    "postgres-max-connections": "P2",
}


@hookimpl
def runbook_suggest_severity(result: Any) -> str | None:
    """Suggest a severity from what this run found; None when it found nothing."""
    refused = "failed" in [c.outcome for c in result.checks if not c.tests]
    # Accept queues full or no file handles left: clients are refused.
    also = ["P1"] if refused else []
    return severity_from_findings(result, SEVERITY_BY_FINDING, symptom_only="P1", also=also)
