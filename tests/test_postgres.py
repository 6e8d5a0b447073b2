"""The postgres plugin: the read-only statement check on literal SQL, the client and its
helpers against the private PostgreSQL cluster of tests/pg.py, and the fixture via the CLI."""

from __future__ import annotations

import re

import pytest
from runbook.plugins.postgres import PostgresClient
from runbook.plugins.sqlpolicy import read_only_refusal

from runbook import ReadOnlyViolation

PLUGIN = "runbook.plugins.postgres"

ALLOWED = [
    "SELECT 1",
    "select * from pg_stat_activity where state = 'active';",
    "SHOW max_connections",
    "EXPLAIN SELECT * FROM pg_class",
    "EXPLAIN (COSTS off, VERBOSE) SELECT 1",
    "WITH a AS (SELECT 1 AS x) SELECT x FROM a",
    "SELECT 'insert into t values (1); drop table t' AS text",
    "SELECT $$ pg_terminate_backend(1); $$ AS text",
    "SELECT 1 -- delete from t",
    "SELECT count(*) FROM pg_locks WHERE NOT granted",
    "SELECT pg_blocking_pids(42)",
]

REFUSED = [
    ("INSERT INTO t VALUES (1)", "INSERT is not a plain read"),
    ("UPDATE t SET x = 1", "UPDATE is not a plain read"),
    ("DELETE FROM t", "DELETE is not a plain read"),
    ("DROP TABLE t", "DROP is not a plain read"),
    ("CREATE TABLE t (i int)", "CREATE is not a plain read"),
    ("TRUNCATE t", "TRUNCATE is not a plain read"),
    ("COPY t TO PROGRAM 'rm -rf /'", "COPY reads or writes server files and can run programs"),
    ("COPY (SELECT 1) TO '/tmp/x'", "COPY is not a plain read"),
    ("SET default_transaction_read_only = off", "SET changes session settings"),
    ("BEGIN", "transactions are managed by the client"),
    ("COMMIT", "transactions are managed by the client"),
    ("VACUUM t", "VACUUM changes tables"),
    ("LOCK TABLE t IN ACCESS EXCLUSIVE MODE", "LOCK takes a table lock"),
    ("DO $$ BEGIN PERFORM 1; END $$", "DO runs procedural code"),
    ("SELECT pg_terminate_backend(123)", "pg_terminate_backend terminates another session"),
    ("SELECT pg_cancel_backend(pid) FROM pg_stat_activity", "pg_cancel_backend cancels"),
    ('SELECT "pg_cancel_backend"(1)', "pg_cancel_backend cancels"),
    ("SELECT pg_catalog.PG_TERMINATE_BACKEND(1)", "pg_terminate_backend terminates"),
    ("SELECT set_config('transaction_read_only', 'off', false)", "set_config changes a setting"),
    ("SELECT nextval('s')", "nextval advances a sequence"),
    ("SELECT setval('s', 1)", "setval sets a sequence"),
    ("SELECT lo_import('/etc/passwd')", "lo_import uses large objects"),
    ("SELECT lo_export(1, '/tmp/x')", "lo_export uses large objects"),
    ("SELECT lo_unlink(1)", "lo_unlink uses large objects"),
    ("SELECT pg_reload_conf()", "pg_reload_conf reloads the server configuration"),
    ("SELECT pg_rotate_logfile()", "pg_rotate_logfile rotates the server log"),
    ("SELECT * FROM dblink('db', 'DELETE FROM t') AS x(i int)", "dblink runs statements"),
    ("SELECT dblink_exec('db', 'DROP TABLE t')", "dblink_exec runs statements"),
    ("SELECT pg_stat_reset()", "pg_stat_reset resets statistics"),
    ("SELECT pg_advisory_lock(1)", "pg_advisory_lock takes an advisory lock"),
    ("SELECT 1; DROP TABLE t", "several statements in one string"),
    ("SELECT 1; SELECT 2", "several statements in one string"),
    ("SELECT 1 /* ; */ ; /* nested /* */ */ DELETE FROM t", "several statements"),
    ("EXPLAIN ANALYZE DELETE FROM t", "ANALYZE: EXPLAIN ANALYZE runs the statement"),
    ("EXPLAIN (ANALYZE) SELECT 1", "ANALYZE: EXPLAIN ANALYZE runs the statement"),
    ("EXPLAIN ANALYSE SELECT 1", "ANALYSE: EXPLAIN ANALYSE runs the statement"),
    ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "DELETE: deletes rows"),
    ("WITH u AS (UPDATE t SET x = 1 RETURNING *) SELECT 1", "UPDATE: writes or locks rows"),
    ("SELECT * INTO new_table FROM t", "INTO: SELECT INTO creates a table"),
    ("SELECT * FROM t FOR UPDATE", "UPDATE: writes or locks rows"),
    ("SELECT * FROM t FOR SHARE", "SHARE: FOR SHARE locks rows"),
    ('SELECT U&"pg\\005fcancel_backend"(1)', "Unicode-escaped"),
    ("SELECT /* unterminated", "an unterminated /* comment"),
    ("-- only a comment", "an empty statement"),
    ("CALL p()", "CALL runs a procedure"),
]


@pytest.mark.parametrize("sql", ALLOWED)
def test_plain_reads_are_allowed(sql):
    assert read_only_refusal(sql) is None


@pytest.mark.parametrize(("sql", "reason"), REFUSED)
def test_statements_that_are_not_plain_reads_are_refused(sql, reason):
    refusal = read_only_refusal(sql)
    assert refusal is not None and reason in refusal, refusal


def test_the_refused_table_is_large_enough():
    assert len(REFUSED) >= 15


@pytest.fixture
def client(pg):
    client = PostgresClient(pg.dsn())
    yield client
    client.close()


@pytest.mark.parametrize(("sql", "reason"), REFUSED[:20])
def test_the_client_refuses_before_sending(client, sql, reason):
    with pytest.raises(ReadOnlyViolation) as refused:
        client.query(sql)
    assert reason in refused.value.reason
    assert client._connection is None  # nothing was sent: not even connected


def test_a_read_only_transaction_blocks_a_write_the_text_check_missed(client, pg):
    import psycopg

    with pytest.raises(ReadOnlyViolation) as refused:
        client._execute("CREATE TABLE sneaky (i int)")
    assert isinstance(refused.value.__cause__, psycopg.errors.ReadOnlySqlTransaction)
    assert "cannot execute CREATE TABLE in a read-only transaction" in refused.value.reason
    # Not even a plain SET can turn the transaction read-write: the snapshot is taken.
    with pytest.raises(RuntimeError, match="read-write mode must be set before any query"):
        client._execute("SET TRANSACTION READ WRITE")
    with pg.connect() as admin:
        found = admin.execute("SELECT to_regclass('sneaky') AS t").fetchone()
    assert found == (None,)


def test_queries_return_dicts_and_take_parameters(client):
    assert client.query("SELECT %s::int AS n, 'x' AS s", (7,)) == [{"n": 7, "s": "x"}]
    assert client.query("SHOW max_connections") == [{"max_connections": "30"}]


def test_helpers_on_a_quiet_server(client):
    usage = client.connections()
    assert usage.max_connections == 30 and usage.total >= 1 and usage.reserved == 3
    assert usage.by_state.get("active", 0) >= 1  # our own query
    assert client.long_running_queries(60) == []
    assert client.lock_waits() == []
    ratio, blocks = client.cache_hit_ratio()
    assert blocks > 0 and ratio is not None and 0 < ratio <= 1
    assert client.replication_lag() == []  # a primary without standbys


def test_not_configured_without_dsn_or_environment(monkeypatch):
    for name in ("PGHOST", "PGHOSTADDR", "PGSERVICE", "PGDATABASE"):
        monkeypatch.delenv(name, raising=False)
    assert not PostgresClient("").is_configured
    monkeypatch.setenv("PGHOST", "127.0.0.1")
    assert PostgresClient("").is_configured


def test_the_password_never_appears_in_errors(pg):
    wrong = pg.dsn().replace(pg.password, "wrong-Secret-123")
    client = PostgresClient(wrong)
    with pytest.raises(RuntimeError) as failed:
        client.query("SELECT 1")
    message = str(failed.value)
    assert "password authentication failed" in message
    assert "wrong-Secret-123" not in message and f"127.0.0.1:{pg.port}" in message
    assert "wrong-Secret-123" not in repr(client)


def test_plugin_provides_the_postgres_fixture_through_the_cli(project, pg):
    project.write("runbook.toml", f'plugins = ["{PLUGIN}"]\n')
    project.runbook(
        "pgcheck",
        '''
        """PG check."""
        from runbook import check, evidence, hypothesis, rule_in

        PARAMS = {"pg_dsn": ""}
        SECRETS = ["pg_dsn"]
        h = hypothesis("refused", "a write is refused")

        @check(tests=h)
        def tries_a_write(postgres):
            evidence("settings", postgres.query("SHOW max_connections"))
            postgres.query("SELECT pg_terminate_backend(1)")
        ''',
    )
    result, data = project.run_json("pgcheck", "--param", f"pg_dsn={pg.dsn()}")
    [check] = data["checks"]
    assert check["outcome"] == "blocked", check
    assert "pg_terminate_backend terminates another session" in check["message"]
    assert pg.password not in result.output
    assert pg.password not in (project.root / "pgcheck.json").read_text()


@pytest.mark.parametrize(
    ("sql", "params"),
    [
        ("SELECT %s, %s", (1, 2)),
        ("SELECT %(a)s, %(b)s, %(a)s", {"a": 1, "b": 2}),
        ("SELECT 5 %% 3, %s", (1,)),
        ("SELECT %s$q$ x $q$", (1,)),
        ("SELECT '%s' -- %s\n, %s", (1, 2, 3)),
    ],
)
def test_the_policy_judges_the_text_psycopg_sends(sql, params):
    from psycopg._queries import PostgresQuery
    from psycopg.adapt import Transformer
    from runbook.plugins.postgres import as_sent

    sent = PostgresQuery(Transformer())
    sent.convert(sql, params)
    assert as_sent(sql, params) == re.sub(r"\$\d+", "$1", sent.query.decode())
    assert as_sent(sql, None) == sql


def test_the_query_travels_alone_in_a_read_only_session(client):
    # The extended protocol: the server itself refuses a second statement.
    refused = client._perform("SELECT 1; SELECT 2", None)
    assert refused == {"refused": refused["refused"]}
    assert "PostgreSQL refused several statements" in refused["refused"]
    assert client.query("SHOW default_transaction_read_only") == [
        {"default_transaction_read_only": "on"}
    ]


def test_a_server_refusal_in_a_cassette_is_refused_again():
    class Replay:
        def exchange(self, kind, request, perform):
            return {"refused": "PostgreSQL refused it: cannot execute CREATE TABLE"}

    client = PostgresClient("host=replayed", host=Replay())
    with pytest.raises(ReadOnlyViolation, match="cannot execute CREATE TABLE"):
        client.query("SELECT 1")
    assert client._connection is None
