"""Database slow.

Symptoms: PostgreSQL queries take longer than usual, requests that use the database time
out, the application waits for connections from its pool. The checks tell statements
that have been running for a long time from sessions waiting on another session's locks,
from a server that runs out of connection slots and from a buffer cache that misses.
Every check is a read-only query through the ``postgres`` fixture (connecting from this
machine to ``pg_dsn``); the actions cancel queries and run only with ``--execute``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING
from typing import Any

from runbook import action
from runbook import check
from runbook import evidence
from runbook import hookimpl
from runbook import hypothesis
from runbook import severity_from_findings
from runbook import skip

if TYPE_CHECKING:
    from runbook.plugins.postgres import PostgresClient

PARAMS = {
    # libpq connection string or URI; "" uses the PG* environment variables (or skips).
    "pg_dsn": "",
    # A trivial query slower than this (milliseconds) confirms the symptom.
    "max_latency_ms": 500.0,
    # A statement running this long (seconds) counts as long-running.
    "long_query_seconds": 30.0,
    # A session waiting on a lock this long (seconds) counts as a lock wait.
    "lock_wait_seconds": 5.0,
    # Client connections at or above this percentage of max_connections count as saturation.
    "connections_percent": 80.0,
    # A buffer cache hit ratio below this counts as low.
    "cache_hit_ratio_min": 0.9,
    # Below this many block accesses since the statistics reset, the ratio means little.
    "cache_min_blocks": 1000,
}
# The DSN may hold a password: redacted in reports, JSON, cassettes and the audit log.
SECRETS = ["pg_dsn"]
TAGS = ["database", "postgresql", "performance"]
SEVERITY = "P2"

long_queries = hypothesis(
    "long-running-queries", "Statements have been running for a long time and hold resources"
)
lock_waits = hypothesis("lock-waits", "Sessions wait for locks that other sessions hold")
saturation = hypothesis("connection-saturation", "Client connections are close to max_connections")
cache_misses = hypothesis("low-cache-hit-ratio", "Reads miss the buffer cache and go to disk")

_NOT_CONFIGURED = "needs --param pg_dsn=DSN (or PGHOST, PGSERVICE or PGDATABASE set)"


def _require(postgres: PostgresClient) -> None:
    if not postgres.is_configured:
        skip(_NOT_CONFIGURED)


@check
def database_answers_quickly(postgres: PostgresClient, params: Any) -> str:
    """Symptom: fail when ``SELECT 1`` takes longer than ``max_latency_ms`` (best of three)."""
    _require(postgres)
    postgres.query("SELECT 1")  # connect first: the latency is that of a query
    [row] = postgres.query(
        "SELECT version() AS version, current_database() AS database,"
        " pg_postmaster_start_time()::text AS started"
    )
    rounds = []
    for _ in range(3):
        start = time.perf_counter()
        postgres.query("SELECT 1")
        rounds.append((time.perf_counter() - start) * 1000)
    latency = min(rounds)
    evidence("Server", [{**row, "select_1_ms": round(latency, 2)}])
    assert latency <= params.max_latency_ms, (
        f"SELECT 1 took {latency:.0f} ms on {postgres.where}"
        f" (threshold {params.max_latency_ms:g} ms)"
    )
    return (
        f"SELECT 1 took {latency:.1f} ms on {postgres.where},"
        f" threshold {params.max_latency_ms:g} ms"
    )


@check(tests=long_queries)
def no_long_running_queries(postgres: PostgresClient, params: Any) -> str:
    """Rule ``long-running-queries`` out when no statement runs ``long_query_seconds`` or more."""
    _require(postgres)
    rows = postgres.long_running_queries(params.long_query_seconds)
    evidence(f"Statements running {params.long_query_seconds:g}s or more", rows or "none")
    assert not rows, "; ".join(
        f"pid {row['pid']} has run {row['duration_s']:g}s ({row['state']}): {row['query']}"
        for row in rows[:5]
    )
    return f"no statement has run {params.long_query_seconds:g}s or more on {postgres.where}"


@check(tests=lock_waits)
def no_lock_waits(postgres: PostgresClient, params: Any) -> str:
    """Rule ``lock-waits`` out when no session waits ``lock_wait_seconds`` on another's lock."""
    _require(postgres)
    waits = postgres.lock_waits()
    evidence("Sessions waiting on locks", waits or "none")
    long_waits = [row for row in waits if row["waiting_s"] >= params.lock_wait_seconds]
    assert not long_waits, "; ".join(
        f"pid {row['waiting_pid']} has waited {row['waiting_s']:g}s"
        f" for {row['wants'] or 'a lock'} held by pid {row['blocking_pid']}"
        f" ({row['blocking_state']}: {row['blocking_query']})"
        for row in long_waits[:5]
    )
    threshold = f"threshold {params.lock_wait_seconds:g}s"
    if not waits:
        return f"no session waits on a lock on {postgres.where}, {threshold}"
    longest = max(waits, key=lambda row: row["waiting_s"])
    sessions = len({row["waiting_pid"] for row in waits})
    many = "s wait" if sessions > 1 else " waits"
    return (
        f"{sessions} session{many} on a lock, longest pid {longest['waiting_pid']} for "
        f"{longest['waiting_s']:g}s (blocked by pid {longest['blocking_pid']}), {threshold}"
    )


@check(tests=saturation)
def connections_below_limit(postgres: PostgresClient, params: Any) -> str:
    """Rule ``connection-saturation`` out below ``connections_percent`` of max_connections."""
    _require(postgres)
    usage = postgres.connections()
    rows = [{"state": state, "connections": n} for state, n in usage.by_state.items()]
    rows.append({"state": "total", "connections": usage.total})
    rows.append({"state": "max_connections", "connections": usage.max_connections})
    evidence("Client connections by state", rows)
    assert usage.percent < params.connections_percent, (
        f"{usage.total} of {usage.max_connections} connections in use"
        f" ({usage.percent:.0f}%, threshold {params.connections_percent:g}%;"
        f" {usage.reserved} reserved for superusers)"
    )
    return (
        f"{usage.total} of {usage.max_connections} connections in use on {postgres.where}"
        f" ({usage.percent:.0f}%), threshold {params.connections_percent:g}%"
    )


@check(tests=cache_misses)
def cache_hit_ratio_is_high(postgres: PostgresClient, params: Any) -> str:
    """Rule ``low-cache-hit-ratio`` out when the database's hit ratio is at least the minimum."""
    _require(postgres)
    ratio, blocks = postgres.cache_hit_ratio()
    shown = "n/a" if ratio is None else round(ratio, 4)
    evidence("Buffer cache", [{"hit_ratio": shown, "block_accesses": blocks}])
    if ratio is None or blocks < params.cache_min_blocks:
        skip(f"only {blocks} block accesses since the statistics reset: too few to judge")
    assert ratio >= params.cache_hit_ratio_min, (
        f"cache hit ratio {ratio:.3f} on {postgres.where} over {blocks} block accesses"
        f" (minimum {params.cache_hit_ratio_min:g})"
    )
    return (
        f"cache hit ratio {ratio:.3f} on {postgres.where} over {blocks} block accesses,"
        f" minimum {params.cache_hit_ratio_min:g}"
    )


@action(mitigates=long_queries)
def cancel_long_running_queries(postgres: PostgresClient, params: Any) -> None:
    """Cancel the statements running ``long_query_seconds`` or more (``pg_cancel_backend``).

    A write: it goes through ``PostgresClient.cancel_backend``, the client's one
    deliberate bypass of its read-only layers, and so runs only with ``--execute``.
    """
    rows = postgres.long_running_queries(params.long_query_seconds)
    active = [row for row in rows if row["state"] == "active"]
    done = [{**row, "cancelled": postgres.cancel_backend(int(row["pid"]))} for row in active]
    evidence("Cancelled statements", done or "none running")


@action(mitigates=lock_waits)
def cancel_blocking_queries(postgres: PostgresClient, params: Any) -> None:
    """Cancel the running statements that block others; list idle blockers for a human.

    A session ``idle in transaction`` that holds a lock has no statement to
    cancel: it is shown, for the operator to end (``pg_terminate_backend``).
    """
    waits = postgres.lock_waits()
    rows = []
    for pid in sorted({int(row["blocking_pid"]) for row in waits}):
        state = next(row["blocking_state"] for row in waits if row["blocking_pid"] == pid)
        cancelled = postgres.cancel_backend(pid) if state == "active" else False
        rows.append({"blocking_pid": pid, "state": state, "cancelled": cancelled})
    evidence("Blocking sessions", rows or "none")


#: The severity each ruled-in hypothesis suggests (P0..P4 as in docs/incidents.md).
#: One level less when the symptom check ran and did not confirm the symptom; nothing
#: ruled in: P2 when the database answers slowly, else none.
SEVERITY_BY_FINDING = {
    "long-running-queries": "P2",
    "lock-waits": "P2",
    "connection-saturation": "P2",
    "low-cache-hit-ratio": "P3",
}


@hookimpl
def runbook_suggest_severity(result: Any) -> str | None:
    """Suggest a severity from what this run found; None when it found nothing."""
    return severity_from_findings(result, SEVERITY_BY_FINDING, symptom_only="P2")
