"""The built-in database-slow runbook against real faults in a private PostgreSQL server.

Every fault is real, made in the session's cluster (tests/pg.py) over the superuser's
Unix socket, while the runbook connects over TCP as a ``pg_monitor`` role with a
password: a ``pg_sleep`` that keeps running, a session holding an ACCESS EXCLUSIVE
lock in an open transaction while another waits on a SELECT, 24 more connections on a
server with ``max_connections=30``, and sequential scans of a table larger than a
quarter of ``shared_buffers`` (they go through a small ring buffer, so after
``pg_stat_reset`` almost every block access is a read). Each test breaks one thing, so
the hypothesis it names is ruled in and every other one is ruled out.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from resultdata import assert_passed_checks_say_what_they_measured
from resultdata import by_id

HYPOTHESES = [
    "long-running-queries",
    "lock-waits",
    "connection-saturation",
    "low-cache-hit-ratio",
]
PG_ENV = ("PGHOST", "PGHOSTADDR", "PGSERVICE", "PGDATABASE", "PGPASSWORD")


@pytest.fixture
def quiet(project, pg, monkeypatch) -> dict[str, str]:
    """Parameters under which every check passes on the idle test database."""
    for name in PG_ENV:
        monkeypatch.delenv(name, raising=False)
    # Until runbook.config registers the plugin by default.
    project.write("runbook.toml", 'plugins = ["runbook.plugins.postgres"]\n')
    return {"pg_dsn": pg.dsn(), "cache_min_blocks": "1"}


def run_database_slow(project, params: dict[str, str], *args: str) -> tuple[Any, dict]:
    argv = [arg for key, value in params.items() for arg in ("--param", f"{key}={value}")]
    return project.run_json("database-slow", *argv, *args)


def assert_only_ruled_in(data: dict, culprits: set[str]) -> dict[str, dict]:
    hypotheses = by_id(data["hypotheses"])
    assert list(hypotheses) == HYPOTHESES
    statuses = {key: value["status"] for key, value in hypotheses.items()}
    expected = {key: "ruled_in" if key in culprits else "ruled_out" for key in HYPOTHESES}
    assert statuses == expected, [(c["id"], c["outcome"], c["message"]) for c in data["checks"]]
    return hypotheses


def wait_for(pg, sql: str, params: tuple, within: float = 10.0) -> None:
    """Poll ``sql`` as the superuser until it returns a true first column."""
    deadline = time.monotonic() + within
    with pg.connect("postgres") as admin:
        while time.monotonic() < deadline:
            row = admin.execute(sql, params).fetchone()
            if row and row[0]:
                return
            time.sleep(0.05)
    pytest.fail(f"timed out waiting for: {sql} {params}")


class Background:
    """A statement running on its own connection in a thread, until cancelled or done."""

    def __init__(self, connection: Any, sql: str) -> None:
        self.connection = connection
        self.pid = connection.info.backend_pid
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(sql,), daemon=True)
        self.thread.start()

    def _run(self, sql: str) -> None:
        try:
            self.connection.execute(sql)
        except Exception as exc:  # a cancelled statement ends the thread: kept for asserts
            self.error = exc

    def stop(self) -> None:
        self.connection.cancel_safe()
        self.thread.join(10)
        self.connection.close()


@pytest.fixture
def long_query(pg) -> Iterator[Background]:
    """``SELECT pg_sleep(30)`` running for more than a second, as the monitoring role.

    The role may cancel its own queries (the execute test); not a superuser's.
    """
    import psycopg

    query = Background(psycopg.connect(pg.dsn(), autocommit=True), "SELECT pg_sleep(30)")
    wait_for(
        pg,
        "SELECT now() - query_start > interval '1.1 s' FROM pg_stat_activity"
        " WHERE pid = %s AND state = 'active'",
        (query.pid,),
    )
    yield query
    query.stop()


def test_a_quiet_database_rules_everything_out(project, quiet, pg, private_audit_log):
    result, data = run_database_slow(project, quiet)
    assert_only_ruled_in(data, set())
    assert result.exit_code == 0, result.output
    checks = by_id(data["checks"])
    assert checks["database_answers_quickly"]["outcome"] == "passed"
    assert {check["outcome"] for check in checks.values()} == {"passed"}
    assert {a["status"] for a in data["actions"]} == {"not_needed"}
    assert (data["runbook"]["name"], data["runbook"]["title"]) == ("database-slow", "Database slow")
    # The DSN's password is a secret: nowhere in the terminal, report, JSON or audit log.
    report = (project.root / "database-slow.md").read_text()
    for text in (result.output, report, str(data), private_audit_log.read_text()):
        assert pg.password not in text
        assert pg.dsn() not in text
    assert data["params"]["pg_dsn"] == "***"
    # What was measured, against which threshold, and on which server.
    where = f"127.0.0.1:{pg.port}/runbook_test"
    server = re.escape(where)
    latency = checks["database_answers_quickly"]["message"]
    assert re.fullmatch(rf"SELECT 1 took \d+\.\d ms on {server}, threshold 500 ms", latency)
    evidence = {key: value["evidence"] for key, value in by_id(data["hypotheses"]).items()}
    assert evidence["long-running-queries"] == [f"no statement has run 30s or more on {where}"]
    assert evidence["lock-waits"] == [f"no session waits on a lock on {where}, threshold 5s"]
    [saturation] = evidence["connection-saturation"]
    assert re.fullmatch(
        rf"\d of 30 connections in use on {server} \(\d+%\), threshold 80%", saturation
    ), saturation
    [cache] = evidence["low-cache-hit-ratio"]
    assert re.fullmatch(
        rf"cache hit ratio [01]\.\d{{3}} on {server} over \d+ block accesses, minimum 0\.9",
        cache,
    ), cache
    assert_passed_checks_say_what_they_measured(data)


def test_a_command_line_run_imports_its_postgres_driver_inside_a_check(project, quiet):
    # A fresh interpreter, unlike the in-process runs here (pytest already loaded psycopg):
    # the driver is first imported by a check, under the read-only guard.
    argv = [arg for key, value in quiet.items() for arg in ("--param", f"{key}={value}")]
    done = project.run("run", "database-slow", "--json", "result.json", *argv)
    data = json.loads((project.root / "result.json").read_text())
    outcomes = {check["id"]: (check["outcome"], check["message"]) for check in data["checks"]}
    assert {outcome for outcome, _ in outcomes.values()} == {"passed"}, outcomes
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_long_running_query_is_ruled_in_naming_its_pid(project, quiet, long_query):
    result, data = run_database_slow(project, {**quiet, "long_query_seconds": "1"})
    hypotheses = assert_only_ruled_in(data, {"long-running-queries"})
    [message] = hypotheses["long-running-queries"]["evidence"]
    assert re.fullmatch(
        rf"pid {long_query.pid} has run \d+(\.\d)?s \(active\): SELECT pg_sleep\(30\)", message
    ), message
    [table] = by_id(data["checks"])["no_long_running_queries"]["evidence"]
    assert "duration_s" in table["body"] and str(long_query.pid) in table["body"]
    assert result.exit_code == 1
    # Read-only: the cancel is planned, not run; the query is still running.
    actions = by_id(data["actions"])
    assert actions["cancel_long_running_queries"]["status"] == "planned"
    assert actions["cancel_blocking_queries"]["status"] == "not_needed"
    assert long_query.thread.is_alive()


def test_execute_mode_cancels_the_long_running_query(project, quiet, long_query):
    params = {**quiet, "long_query_seconds": "1"}
    _, data = run_database_slow(project, params, "--execute", "--yes")
    assert by_id(data["actions"])["cancel_long_running_queries"]["status"] == "executed", data[
        "actions"
    ]
    long_query.thread.join(10)
    assert "canceling statement due to user request" in str(long_query.error)


@pytest.fixture
def lock_wait(pg) -> Iterator[tuple[Any, Background]]:
    """One session holds ACCESS EXCLUSIVE on a table in an open transaction; one waits."""
    with pg.connect() as admin:
        admin.execute("CREATE TABLE IF NOT EXISTS locked (i int)")
    holder = pg.connect()
    holder.execute("BEGIN")
    holder.execute("LOCK TABLE locked IN ACCESS EXCLUSIVE MODE")
    waiter = Background(pg.connect(), "SELECT * FROM locked")
    wait_for(pg, "SELECT %s = ANY(pg_blocking_pids(%s))", (holder.info.backend_pid, waiter.pid))
    yield holder, waiter
    holder.execute("ROLLBACK")
    holder.close()
    waiter.stop()


def test_a_lock_wait_is_ruled_in_naming_both_pids(project, quiet, lock_wait):
    holder, waiter = lock_wait
    holder_pid = holder.info.backend_pid
    result, data = run_database_slow(project, {**quiet, "lock_wait_seconds": "0"})
    hypotheses = assert_only_ruled_in(data, {"lock-waits"})
    [message] = hypotheses["lock-waits"]["evidence"]
    assert re.fullmatch(
        rf"pid {waiter.pid} has waited \d+(\.\d)?s for AccessShareLock on locked held by"
        rf" pid {holder_pid} \(idle in transaction: LOCK TABLE locked IN ACCESS EXCLUSIVE"
        r" MODE\)",
        message,
    ), message
    [table] = by_id(data["checks"])["no_lock_waits"]["evidence"]
    assert "waiting_pid" in table["body"] and "blocking_pid" in table["body"]
    assert by_id(data["actions"])["cancel_blocking_queries"]["status"] == "planned"
    assert result.exit_code == 1


@pytest.fixture
def many_connections(pg) -> Iterator[list[Any]]:
    """24 idle superuser connections: with the runbook's own, 25 of max_connections=30."""
    connections = [pg.connect() for _ in range(24)]
    yield connections
    for connection in connections:
        connection.close()


def test_connections_near_max_connections_are_ruled_in(project, quiet, many_connections):
    _, data = run_database_slow(project, quiet)
    hypotheses = assert_only_ruled_in(data, {"connection-saturation"})
    [message] = hypotheses["connection-saturation"]["evidence"]
    assert message == (
        "25 of 30 connections in use (83%, threshold 80%; 3 reserved for superusers)"
    ), message


@pytest.fixture
def cold_cache(pg) -> Iterator[str]:
    """A database whose only block accesses since pg_stat_reset are two seq scans of 14 MB."""
    with pg.connect("postgres") as admin:
        admin.execute("DROP DATABASE IF EXISTS cold")
        admin.execute("CREATE DATABASE cold")
    with pg.connect("cold") as connection:
        connection.execute(
            "CREATE TABLE big AS SELECT i, repeat('x', 60) AS pad FROM generate_series(1, 150000) i"
        )
        connection.execute("SELECT pg_stat_reset()")
    with pg.connect("cold") as connection:
        connection.execute("SELECT count(*) FROM big")
        connection.execute("SELECT count(*) FROM big")
    wait_for(pg, "SELECT blks_read > 1500 FROM pg_stat_database WHERE datname = %s", ("cold",))
    yield pg.dsn("cold")


def test_a_low_cache_hit_ratio_is_ruled_in(project, quiet, cold_cache):
    _, data = run_database_slow(project, {**quiet, "pg_dsn": cold_cache})
    hypotheses = assert_only_ruled_in(data, {"low-cache-hit-ratio"})
    [message] = hypotheses["low-cache-hit-ratio"]["evidence"]
    match = re.fullmatch(
        r"cache hit ratio (0\.\d+) on 127\.0\.0\.1:\d+/cold over \d+ block accesses"
        r" \(minimum 0\.9\)",
        message,
    )
    assert match and float(match[1]) < 0.5, message


def test_without_a_dsn_every_check_is_skipped(project, quiet):
    _, data = run_database_slow(project, {})
    reasons = {check["id"]: check["message"] for check in data["checks"]}
    assert set(reasons.values()) == {
        "needs --param pg_dsn=DSN (or PGHOST, PGSERVICE or PGDATABASE set)"
    }
    assert {check["outcome"] for check in data["checks"]} == {"skipped"}
    assert {h["status"] for h in data["hypotheses"]} == {"untested"}


def test_database_slow_lints_and_dry_runs_cleanly(tmp_path):
    def runbook(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "runbook", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={**os.environ, "NO_COLOR": "1"},
            timeout=120,
        )

    tmp_path.joinpath("runbook.toml").write_text('plugins = ["runbook.plugins.postgres"]\n')
    lint = runbook("lint", "database-slow")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    dry = runbook("run", "database-slow", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "cancel_long_running_queries" in dry.stdout
    for hypothesis in HYPOTHESES:
        assert hypothesis in dry.stdout


def test_database_slow_over_ssh_names_the_culprits(
    remote_project, sshd, pg, long_query, lock_wait, monkeypatch
):
    """Run on the test sshd; the postgres fixture reaches the DSN from this machine."""
    for name in PG_ENV:
        monkeypatch.delenv(name, raising=False)
    holder, waiter = lock_wait
    params = {
        "pg_dsn": pg.dsn(),
        "cache_min_blocks": "1",
        "long_query_seconds": "1",
        "lock_wait_seconds": "0",
    }
    argv = [arg for key, value in params.items() for arg in ("--param", f"{key}={value}")]
    done = remote_project.run(
        "run", "database-slow", "-H", f"127.0.0.2:{sshd.port}", *argv, "--json", "result.json"
    )
    data = json.loads((remote_project.root / "result.json").read_text())
    where = f"127.0.0.2:{sshd.port}"
    assert [(h["name"], h["status"]) for h in data["hosts"]] == [(where, "ok")], done.stderr
    assert {check["host"] for check in data["checks"]} == {where}
    hypotheses = by_id(data["hypotheses"])
    statuses = {key: value["status"] for key, value in hypotheses.items()}
    assert statuses == {
        "long-running-queries": "ruled_in",
        "lock-waits": "ruled_in",
        "connection-saturation": "ruled_out",
        "low-cache-hit-ratio": "ruled_out",
    }, [(c["id"], c["outcome"], c["message"]) for c in data["checks"]]
    assert hypotheses["long-running-queries"]["hosts"] == {where: "ruled_in"}
    [long_message] = hypotheses["long-running-queries"]["evidence"]
    assert f"pid {long_query.pid} has run " in long_message
    assert "SELECT pg_sleep(30)" in long_message, long_message
    [lock_message] = hypotheses["lock-waits"]["evidence"]
    assert lock_message.startswith(f"pid {waiter.pid} has waited "), lock_message
    assert f"held by pid {holder.info.backend_pid} (idle in transaction" in lock_message
    assert pg.password not in done.stdout + done.stderr
    assert data["params"]["pg_dsn"] == "***"
    assert done.returncode == 1
