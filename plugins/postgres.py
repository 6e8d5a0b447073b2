"""The ``postgres`` fixture: read-only PostgreSQL queries and health helpers.

Unlike the ``http`` probes, the client connects from *this* machine (with
psycopg), whatever the current target is: the DSN names the database. It
comes from the ``pg_dsn`` parameter of the runbook, or when that is empty
from the ``PG*`` environment variables libpq reads.

Read-only at three layers:

1. the client refuses, before anything is sent, every statement that is not a
   plain read (``sqlpolicy.read_only_refusal``, judging the text as the server
   will receive it, placeholders filled in): one ``SELECT``, ``SHOW``,
   ``EXPLAIN`` (without ``ANALYZE``) or ``WITH ... SELECT`` that calls only
   functions on an allowlist. It raises ``ReadOnlyViolation`` with the reason;
2. the statement goes with the extended query protocol, which carries exactly
   one statement: should the text check ever be wrong about where a string
   ends, the server refuses a second statement instead of running it;
3. every statement runs inside ``BEGIN READ ONLY`` ... ``ROLLBACK``, on a
   session whose ``default_transaction_read_only`` is on, and the transaction
   takes its snapshot before the statement, so it cannot be turned
   read-write. PostgreSQL's refusal also becomes ``ReadOnlyViolation``.

None of the layers stops a function that *reads* as a SELECT and acts anyway (a
user-defined operator, a view or a type whose functions call
``pg_terminate_backend``): connect as a role with ``pg_monitor`` only, not a
superuser. The password is never shown: it is scrubbed from every error the
client raises.

Queries go through ``host.exchange``, so ``runbook run --record`` keeps their
rows (or the server's refusal) in the cassette and ``--replay`` answers them
without connecting; the text check runs before, in both.

The plugin also judges ``psql -c`` commands that checks run through
``host.run`` with the same statement policy (see ``psql``).
"""

from __future__ import annotations

# psycopg imports ctypes, whose first import dlopens the interpreter itself: an event the
# read-only guard refuses inside a check. Imported with the plugin, outside every check.
import ctypes  # noqa: F401
import dataclasses
import os
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING
from typing import Any

from runbook import Host
from runbook import ReadOnlyViolation
from runbook import fixture

from .psql import runbook_command_policy as runbook_command_policy
from .sqlpolicy import read_only_refusal

if TYPE_CHECKING:
    import psycopg

_PG_ENV = ("PGHOST", "PGHOSTADDR", "PGSERVICE", "PGDATABASE")
#: Every session of the client is read-only by default, below its BEGIN READ ONLY.
_READ_ONLY_OPTION = "-c default_transaction_read_only=on"
# psycopg's placeholders, as its query converter finds them (psycopg/_queries.py).
_PLACEHOLDER = re.compile(r"%(?:\(([^)]+)\).|.)")
#: How a server refusal is kept in a cassette, so that a replay refuses it again.
_REFUSED = "refused"


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectionUsage:
    """Client connections to the server against ``max_connections``."""

    total: int
    max_connections: int
    #: Connection slots kept for superusers (``superuser_reserved_connections``).
    reserved: int
    #: Connections by state: active, idle, idle in transaction ...
    by_state: dict[str, int]

    @property
    def percent(self) -> float:
        """Return the connections in use as a percentage of ``max_connections``."""
        return 100.0 * self.total / self.max_connections if self.max_connections else 0.0


class PostgresClient:
    """Read-only queries against one PostgreSQL database (the ``postgres`` fixture).

    The connection opens on the first query and closes with the fixture, so a
    runbook can check ``is_configured`` (and skip) without connecting.
    """

    def __init__(
        self, dsn: str = "", *, statement_timeout: float = 10.0, host: Host | None = None
    ) -> None:
        self._dsn = dsn
        self.statement_timeout = statement_timeout
        self._connection: psycopg.Connection[Any] | None = None
        self._host = host

    def __repr__(self) -> str:
        return f"<PostgresClient {self.where}>"

    @property
    def is_configured(self) -> bool:
        """True when a DSN was given or the environment names a server or database."""
        return bool(self._dsn) or any(os.environ.get(name) for name in _PG_ENV)

    @property
    def where(self) -> str:
        """The server and database, as ``host:port/dbname`` (no user, no password)."""
        settings = self._settings()
        host = settings.get("host") or settings.get("hostaddr") or os.environ.get("PGHOST", "")
        port = settings.get("port") or os.environ.get("PGPORT", "5432")
        database = settings.get("dbname") or os.environ.get("PGDATABASE", "")
        return f"{host or 'localhost'}:{port}/{database}"

    def query(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        """Run one plain read and return its rows as dicts.

        Raise ``ReadOnlyViolation`` (sending nothing) unless ``sql`` is one
        ``SELECT``, ``SHOW``, ``EXPLAIN`` without ``ANALYZE`` or ``WITH ... SELECT``
        that calls only allowed functions. ``params`` fill ``%s`` placeholders.
        """
        shown = " ".join(sql.split())[:200]
        reason = read_only_refusal(as_sent(sql, params))
        if reason is not None:
            raise ReadOnlyViolation(shown, reason, "the postgres fixture sends plain reads only")
        if self._host is None:
            rows = self._perform(sql, params)
        else:
            # Through the host, so that --record keeps the rows and --replay answers them.
            request = sql if params is None else f"{sql} -- params: {params!r}"
            rows = self._host.exchange("sql", request, lambda: self._perform(sql, params))
        if isinstance(rows, dict):
            raise ReadOnlyViolation(shown, str(rows.get(_REFUSED, "refused by PostgreSQL")))
        return rows

    def connections(self) -> ConnectionUsage:
        """Count client connections by state, against ``max_connections``."""
        rows = self.query(
            "SELECT coalesce(state, 'unknown') AS state, count(*) AS n,"
            " current_setting('max_connections')::int AS max_connections,"
            " current_setting('superuser_reserved_connections')::int AS reserved"
            " FROM pg_stat_activity WHERE backend_type = 'client backend'"
            " GROUP BY 1 ORDER BY 2 DESC"
        )
        by_state = {row["state"]: int(row["n"]) for row in rows}
        first = rows[0]  # our own connection is one of them
        return ConnectionUsage(
            sum(by_state.values()), first["max_connections"], first["reserved"], by_state
        )

    def long_running_queries(self, min_seconds: float) -> list[dict[str, Any]]:
        """Return the statements running for ``min_seconds`` or more, longest first.

        Idle sessions are left out; ``idle in transaction`` ones count from their
        last statement. The client's own session is left out.
        """
        return self.query(
            "SELECT pid, usename AS user, datname AS database, state,"
            " round(extract(epoch FROM clock_timestamp() - query_start)::numeric, 1)::float8"
            " AS duration_s, wait_event_type AS waiting_on, left(query, 200) AS query"
            " FROM pg_stat_activity"
            " WHERE backend_type = 'client backend' AND state IS DISTINCT FROM 'idle'"
            " AND pid <> pg_backend_pid()"
            " AND clock_timestamp() - query_start >= make_interval(secs => %s)"
            " ORDER BY query_start",
            (min_seconds,),
        )

    def lock_waits(self) -> list[dict[str, Any]]:
        """Return one row per (waiting session, blocking session) pair, longest wait first."""
        return self.query(
            "SELECT w.pid AS waiting_pid,"
            " round(extract(epoch FROM clock_timestamp() - w.query_start)::numeric, 1)::float8"
            " AS waiting_s, left(w.query, 200) AS waiting_query,"
            " (SELECT l.mode || ' on ' || coalesce(l.relation::regclass::text, l.locktype)"
            "  FROM pg_locks l WHERE l.pid = w.pid AND NOT l.granted LIMIT 1) AS wants,"
            " b.pid AS blocking_pid, b.state AS blocking_state,"
            " left(b.query, 200) AS blocking_query"
            " FROM pg_stat_activity w"
            " CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS blocker(pid)"
            " JOIN pg_stat_activity b ON b.pid = blocker.pid"
            " ORDER BY w.query_start, b.pid"
        )

    def cache_hit_ratio(self) -> tuple[float | None, int]:
        """Return the buffer cache hit ratio of the current database and the blocks behind it.

        The ratio is ``blks_hit / (blks_hit + blks_read)`` since the statistics
        were last reset; None when no block was read or hit yet.
        """
        [row] = self.query(
            "SELECT blks_hit, blks_read FROM pg_stat_database WHERE datname = current_database()"
        )
        hit, read = int(row["blks_hit"]), int(row["blks_read"])
        return (hit / (hit + read) if hit + read else None), hit + read

    def replication_lag(self) -> list[dict[str, Any]]:
        """Return the lag of each standby (on a primary) or of this standby's replay."""
        [standby] = self.query("SELECT pg_is_in_recovery() AS standby")
        if standby["standby"]:
            return self.query(
                "SELECT 'this standby' AS standby,"
                " extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8"
                " AS replay_lag_s"
            )
        return self.query(
            "SELECT application_name AS standby, client_addr::text, state,"
            " extract(epoch FROM replay_lag)::float8 AS replay_lag_s"
            " FROM pg_stat_replication ORDER BY application_name"
        )

    def cancel_backend(self, pid: int) -> bool:
        """Cancel the running query of session ``pid``: a WRITE, for actions only.

        This is the one deliberate bypass of the read-only client: it runs
        ``pg_cancel_backend`` outside the read-only transaction. Checks must not
        call it; the ``database-slow`` runbook calls it from its actions, which
        run only with ``--execute`` and confirmation.
        """
        connection = self._connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_cancel_backend(%s) AS cancelled", (pid,))
                row = cursor.fetchone()
        except Exception as exc:
            raise RuntimeError(self._scrub(f"cancelling pid {pid} failed: {exc}")) from None
        return bool(row and row[0])

    def close(self) -> None:
        """Close the connection, if one was opened."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _perform(self, sql: str, params: Any) -> list[dict[str, Any]] | dict[str, str]:
        """Run ``sql``; a refusal by the server becomes data, to be kept in a cassette."""
        try:
            return self._execute(sql, params)
        except ReadOnlyViolation as refused:
            return {_REFUSED: refused.reason}

    def _execute(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        """Run ``sql`` inside ``BEGIN READ ONLY`` ... ``ROLLBACK``, with no text check.

        The snapshot is taken (and read-only mode confirmed) before ``sql`` runs,
        so ``sql`` cannot make the transaction read-write. ``sql`` goes with the
        extended query protocol (``stream``), so the server runs one statement
        at most.
        """
        import psycopg
        from psycopg.rows import dict_row

        connection = self._connect()
        try:
            with connection.cursor(row_factory=dict_row) as cursor:
                cursor.execute("BEGIN READ ONLY")
                try:
                    cursor.execute(
                        "SELECT set_config('statement_timeout', %s, true),"
                        " current_setting('transaction_read_only') AS read_only",
                        (f"{int(self.statement_timeout * 1000)}ms",),
                    )
                    state = cursor.fetchone()
                    if not state or state["read_only"] != "on":
                        raise RuntimeError("PostgreSQL did not start a read-only transaction")
                    return list(cursor.stream(sql, params))
                finally:
                    if not connection.closed:
                        connection.execute("ROLLBACK")
        except psycopg.errors.ReadOnlySqlTransaction as exc:
            raise ReadOnlyViolation(
                " ".join(sql.split())[:200], self._scrub(f"PostgreSQL refused it: {exc}")
            ) from exc
        except psycopg.errors.SyntaxError as exc:
            if exc.sqlstate == "42601" and "multiple commands" in str(exc):
                raise ReadOnlyViolation(
                    " ".join(sql.split())[:200], f"PostgreSQL refused several statements: {exc}"
                ) from exc
            raise RuntimeError(self._scrub(f"query on {self.where} failed: {exc}")) from None
        except psycopg.Error as exc:
            raise RuntimeError(self._scrub(f"query on {self.where} failed: {exc}")) from None

    def _connect(self) -> psycopg.Connection[Any]:
        if self._connection is not None and not self._connection.closed:
            return self._connection
        import psycopg

        if not self.is_configured:
            raise RuntimeError("no PostgreSQL DSN configured (pg_dsn or PG* variables)")
        try:
            self._connection = psycopg.connect(
                self._dsn,
                autocommit=True,
                connect_timeout=10,
                application_name="runbook",
                options=self._options(),
            )
        except psycopg.Error as exc:
            message = self._scrub(f"cannot connect to PostgreSQL at {self.where}: {exc}")
            raise RuntimeError(message) from None
        return self._connection

    def _options(self) -> str:
        """The server options of the DSN (or ``PGOPTIONS``), read-only by default last."""
        given = self._settings().get("options", os.environ.get("PGOPTIONS", ""))
        return f"{given} {_READ_ONLY_OPTION}".strip()

    def _settings(self) -> dict[str, str]:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        try:
            return {key: str(value) for key, value in conninfo_to_dict(self._dsn).items()}
        except psycopg.Error:  # an invalid DSN: connecting reports why (scrubbed)
            return {}

    def _scrub(self, text: str) -> str:
        """Return ``text`` without the password (of the DSN or ``PGPASSWORD``) or the DSN."""
        secrets = [self._dsn, self._settings().get("password", ""), os.environ.get("PGPASSWORD")]
        for secret in sorted(filter(None, secrets), key=len, reverse=True):
            text = text.replace(secret, "***")
        return text


def as_sent(sql: str, params: Any) -> str:
    """Return ``sql`` as psycopg sends it: with ``params``, ``%s`` becomes ``$1``, ``%%`` ``%``.

    The statement policy judges this text, the one the server lexes: a
    placeholder next to a ``$`` or a letter changes where tokens end.
    """
    if params is None:
        return sql

    def convert(match: re.Match[str]) -> str:
        if match[0] == "%%":
            return "%"
        if match[0][-1] not in "sbt":
            return match[0]  # psycopg refuses it before sending; the policy sees a stray %
        return "$1"

    return _PLACEHOLDER.sub(convert, sql)


@fixture(scope="host")
def postgres(params: Any, host: Host) -> Iterator[PostgresClient]:
    """A read-only PostgreSQL client, connecting from this machine to ``params.pg_dsn``."""
    client = PostgresClient(getattr(params, "pg_dsn", "") or "", host=host)
    try:
        yield client
    finally:
        client.close()
