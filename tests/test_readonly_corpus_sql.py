"""Read-only SQL: attempts to change a PostgreSQL server from a check, and reads that must pass.

Every refused row is first judged by the statement policy alone, then a
representative set is tried for real against the private cluster of tests/pg.py,
connected as the **superuser** (the worst case: COPY TO PROGRAM, file access and
signals would all work if anything got through). After each attempt, with the
client's session still open, nothing may have changed: no table created, no row
written, no backend terminated, no advisory lock held, no program run, no file
written, no large object, no sequence advanced, no configuration reloaded, no
statistics reset, no notification sent, no session setting or prepared statement
left. Rows marked ``layers`` are also sent past the text check, straight to the
server: the extended query protocol or the read-only transaction must stop them.

``psql -c`` commands a check runs through ``host.run`` go through the same
statement policy (the postgres plugin's ``runbook_command_policy`` hook); some run
for real through the CLI, with the real ``psql``.
"""

from __future__ import annotations

import dataclasses
import shlex
import textwrap
from pathlib import Path
from typing import Any

import pytest
from runbook.library.connection_exhaustion import _PG_CLIENTS
from runbook.plugins.postgres import PostgresClient
from runbook.plugins.sqlpolicy import read_only_refusal

from runbook import ReadOnlyViolation
from runbook.pluginmanager import load_config
from runbook.safety.guard import make_policy
from runbook.steps import Step

DATABASE = "corpus"
BACKSLASH = "a backslash right before a quote"
SEVERAL = "several statements"
CREATE_T = "CREATE TABLE corpus_t (i int)"
VICTIM, FILE = "{victim}", "{file}"


@dataclasses.dataclass(frozen=True)
class Attempt:
    """One SQL text a check sends, what the policy says, and how it is tried for real."""

    sql: str
    reason: str
    real: bool = False  #: tried against the server through PostgresClient.query
    layers: bool = False  #: also sent past the text check: the server must refuse it


A = Attempt
REFUSED = [
    # The issue: a backslash does not escape a quote in a standard string.
    A(f"SELECT '\\'; COMMIT; {CREATE_T}; --'", BACKSLASH, real=True),
    A("SELECT '\\'; COPY (SELECT 1) TO PROGRAM 'touch {file}'; --'", BACKSLASH, real=True),
    A("SELECT '\\'; SELECT pg_terminate_backend({victim}); --'", BACKSLASH, real=True),
    A("SELECT '\\'; SELECT pg_reload_conf(); --'", BACKSLASH, real=True),
    A("SELECT '\\'; SELECT pg_stat_reset(); --'", BACKSLASH, real=True),
    A("SELECT 'it\\'s'", BACKSLASH),
    A("SELECT '\\\\'", BACKSLASH),
    A(f"SELECT 'a'\n'\\'; {CREATE_T}; --'", BACKSLASH, real=True),
    A(f"SELECT N'\\'; {CREATE_T}; --'", BACKSLASH),
    # The same smuggling with PostgreSQL's lexing rules: the server sees two statements.
    A(f"SELECT ''''; {CREATE_T}; --'", SEVERAL, real=True, layers=True),
    A(f"SELECT E'\\\\'; {CREATE_T}; --'", SEVERAL, real=True, layers=True),
    A(f"SELECT E'a' -- note\n'\\\\'; {CREATE_T}; --'", SEVERAL, real=True, layers=True),
    A(f"SELECT B'1'; {CREATE_T}", SEVERAL, layers=True),
    A(f"SELECT $$ x $$; {CREATE_T}", SEVERAL, real=True, layers=True),
    A(f"SELECT $q$ $$ $q$; {CREATE_T}", SEVERAL, layers=True),
    A("SELECT $q$x$q$; SELECT pg_terminate_backend({victim})", SEVERAL, real=True, layers=True),
    A(f'SELECT "a;""b" FROM (SELECT 1 AS "a;""b") t; {CREATE_T}', SEVERAL, layers=True),
    A(f"SELECT 1 /* */ ; {CREATE_T}", SEVERAL, layers=True),
    A(f"SELECT 1 -- comment\n; {CREATE_T}", SEVERAL, real=True, layers=True),
    A(f"SELECT 1 -- comment\r; {CREATE_T}", SEVERAL, layers=True),
    A(f"SELECT 1 /* /* nested */ still a comment */ ; {CREATE_T}", SEVERAL, layers=True),
    A("SELECT 1; COPY (SELECT 1) TO PROGRAM 'touch {file}'", SEVERAL, real=True, layers=True),
    A("SELECT 1; SELECT 2", SEVERAL),
    A("SELECT $q$ x", "an unterminated dollar-quoted string"),
    A("SELECT 'x", "an unterminated quoted string"),
    A("SELECT E'x\\'", "an unterminated quoted string"),
    A('SELECT "x', "an unterminated quoted identifier"),
    A("SELECT 1 /* /* */", "an unterminated /* comment"),
    A("SELECT $a; SELECT 1", "a $ that starts neither"),
    A("SELECT 1 \\g", "a backslash outside a string"),
    A(f"SELECT E'\u30a2\\'; {CREATE_T}; --'", "a backslash right after a non-ASCII"),
    # Unicode escapes can spell any name or quote.
    A("SELECT U&'\\0027'", "Unicode-escaped"),
    A('SELECT U&"pg\\005fterminate_backend"({victim})', "Unicode-escaped", real=True),
    A("SELECT u&'x!0027' UESCAPE '!'", "Unicode-escaped"),
    # Functions: only those on the allowlist.
    A("SELECT pg_terminate_backend({victim})", "terminates another session", real=True),
    A("SELECT pg_catalog.PG_TERMINATE_BACKEND({victim})", "terminates another", real=True),
    A('SELECT "pg_terminate_backend"({victim})', "terminates another session", real=True),
    A("SELECT pg_cancel_backend({victim})", "cancels another session's query"),
    A("SELECT true OPERATOR(pg_catalog.=) pg_terminate_backend({victim})", "terminat", real=True),
    A("SELECT count(*) FILTER (WHERE pg_terminate_backend({victim})) FROM pg_class", "terminat"),
    A("WITH t AS (SELECT 1) SELECT pg_terminate_backend({victim})", "terminates", real=True),
    A("WITH t AS MATERIALIZED (SELECT pg_terminate_backend({victim})) TABLE t", "terminates"),
    A("SELECT * FROM (SELECT pg_terminate_backend({victim})) s", "terminates"),
    A("EXPLAIN SELECT pg_terminate_backend({victim})", "terminates"),
    A("SELECT pg_reload_conf()", "reloads the server configuration", real=True),
    A("SELECT pg_rotate_logfile()", "rotates the server log"),
    A("SELECT pg_stat_reset()", "resets statistics", real=True),
    A("SELECT pg_stat_reset_shared('bgwriter')", "resets statistics"),
    A("SELECT pg_stat_statements_reset()", "resets statistics"),
    A("SELECT set_config('default_transaction_read_only', 'off', false)", "changes a setting"),
    A("SELECT setseed(0.5)", "random seed"),
    A("SELECT nextval('corpus_seq')", "advances a sequence", real=True, layers=True),
    A("SELECT setval('corpus_seq', 100)", "sets a sequence", real=True, layers=True),
    A("SELECT currval('corpus_seq')", "sequence state"),
    A("SELECT lo_import('/etc/hostname')", "uses large objects", real=True),
    A("SELECT lo_from_bytea(0, 'x')", "uses large objects", real=True),
    A("SELECT lo_export(lo_from_bytea(0, 'x'), '{file}')", "uses large objects", real=True),
    A("SELECT lo_unlink(1)", "uses large objects"),
    A("SELECT pg_read_file('/etc/hostname')", "reads a file of the server"),
    A("SELECT pg_read_binary_file('/etc/hostname')", "reads a file of the server"),
    A("SELECT pg_ls_dir('.')", "lists a folder of the server"),
    A("SELECT pg_stat_file('/etc/hostname')", "reads a file's status"),
    A("SELECT pg_notify('corpus_channel', 'x')", "sends a notification", real=True),
    A("SELECT pg_switch_wal()", "switches the WAL file"),
    A("SELECT pg_create_restore_point('x')", "writes a WAL record"),
    A("SELECT pg_logical_emit_message(true, 'x', 'y')", "writes a WAL record"),
    A("SELECT pg_create_physical_replication_slot('s')", "creates a replication slot"),
    A("SELECT pg_promote()", "promotes a standby"),
    A("SELECT pg_sleep(60)", "waits"),
    A("SELECT txid_current()", "assigns a transaction id"),
    A("SELECT pg_current_xact_id()", "assigns a transaction id"),
    A("SELECT corpus_fn()", "is not on the allowlist", real=True),
    A("SELECT public.now()", "only functions of pg_catalog"),
    A("SELECT * FROM unnest(ARRAY[1]) b(x)", "needs AS"),
    # Functions that run the SQL text they are given.
    A("SELECT query_to_xml('select pg_cancel_backend({victim})', true, true, '')", "SQL text"),
    A(
        "SELECT query_to_xml('select pg_terminate_backend({victim})', true, true, '')",
        "runs the SQL text it is given",
        real=True,
    ),
    A("SELECT query_to_xml_and_xmlschema('select 1', true, true, '')", "runs the SQL text"),
    A("SELECT query_to_xmlschema('select 1', true, true, '')", "runs the SQL text"),
    A("SELECT ts_stat('select to_tsvector(''a'')')", "runs the SQL text"),
    A("SELECT * FROM dblink('dbname=x', 'DELETE FROM t') AS t(i int)", "dblink"),
    A("SELECT dblink_exec('dbname=x', 'DROP TABLE t')", "dblink"),
    A("SELECT cursor_to_xml('c', 1, true, true, '')", "reads a cursor"),
    # Advisory locks: a session lock outlives the ROLLBACK.
    *(
        A(f"SELECT {call}", "advisory lock", real=True)
        for call in (
            "pg_advisory_lock(42)",
            "pg_advisory_lock(4, 2)",
            "pg_advisory_lock_shared(42)",
            "pg_try_advisory_lock(42)",
            "pg_try_advisory_lock_shared(42)",
            "pg_advisory_xact_lock(42)",
            "pg_advisory_xact_lock_shared(42)",
            "pg_try_advisory_xact_lock(42)",
            "pg_try_advisory_xact_lock_shared(42)",
            "pg_catalog.pg_advisory_lock(42)",
            '"pg_advisory_lock"(42)',
        )
    ),
    # Statements that are not plain reads.
    A(CREATE_T, "CREATE is not a plain read", real=True, layers=True),
    A("DROP TABLE corpus_data", "DROP is not a plain read", real=True, layers=True),
    A("TRUNCATE corpus_data", "TRUNCATE is not a plain read", real=True, layers=True),
    A("INSERT INTO corpus_data VALUES (2)", "INSERT is not a plain read", real=True, layers=True),
    A("COPY (SELECT 1) TO PROGRAM 'touch {file}'", "can run programs", real=True),
    A("COPY corpus_data FROM PROGRAM 'touch {file}'", "can run programs", real=True),
    A("COPY (SELECT 1) TO '{file}'", "COPY reads or writes server files", real=True),
    A("COPY corpus_data FROM '/etc/hostname'", "COPY reads", real=True, layers=True),
    A("COPY corpus_data TO STDOUT", "COPY reads"),
    A("DO $$ BEGIN PERFORM pg_terminate_backend({victim}); END $$", "DO runs", real=True),
    A(f"DO LANGUAGE plpgsql $$ BEGIN {CREATE_T}; END $$", "DO runs procedural code", real=True),
    A("CALL corpus_proc()", "CALL runs a procedure", real=True),
    A("SET default_transaction_read_only = off", "SET changes session settings", real=True),
    A("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE", "SET changes", real=True),
    A("SET TRANSACTION READ WRITE", "SET changes session settings"),
    A("SET ROLE postgres", "SET changes session settings"),
    A("RESET ALL", "RESET changes session settings"),
    A("LISTEN corpus_channel", "LISTEN changes session state"),
    A("UNLISTEN *", "UNLISTEN changes session state"),
    A("NOTIFY corpus_channel", "NOTIFY sends a notification", real=True),
    A("PREPARE corpus_p AS SELECT 1", "PREPARE keeps a statement", real=True),
    A("EXECUTE corpus_p", "EXECUTE runs a prepared statement"),
    A("DEALLOCATE ALL", "DEALLOCATE changes session state"),
    A("DECLARE c CURSOR FOR SELECT 1", "DECLARE opens a cursor"),
    A("BEGIN", "transactions are managed by the client"),
    A("START TRANSACTION READ WRITE", "transactions are managed by the client"),
    A("COMMIT", "transactions are managed by the client"),
    A("ROLLBACK", "transactions are managed by the client"),
    A("ABORT", "transactions are managed by the client"),
    A("SAVEPOINT s", "transactions are managed by the client"),
    A("VACUUM corpus_data", "VACUUM changes tables"),
    A("ANALYZE corpus_data", "ANALYZE writes statistics"),
    A("LOCK TABLE corpus_data", "LOCK takes a table lock"),
    A("LOAD 'auto_explain'", "LOAD loads a shared library"),
    A("DISCARD ALL", "DISCARD changes session state"),
    A("CHECKPOINT", "CHECKPOINT forces a checkpoint"),
    A("ALTER SYSTEM SET work_mem = '1MB'", "ALTER is not a plain read"),
    A("TABLE corpus_data", "TABLE is not a plain read"),
    A("-- only a comment", "an empty statement"),
    # Reads that write: data-modifying WITH, SELECT INTO, row locks, EXPLAIN ANALYZE.
    A("WITH d AS (DELETE FROM corpus_data RETURNING *) SELECT * FROM d", "DELETE", real=True),
    A("WITH i AS (INSERT INTO corpus_data VALUES (3) RETURNING *) SELECT 1", "INSERT: writes"),
    A("WITH u AS (UPDATE corpus_data SET i = 0 RETURNING *) SELECT 1", "UPDATE: writes"),
    A("SELECT * INTO corpus_t FROM corpus_data", "INTO: SELECT INTO creates a table", real=True),
    A("SELECT * FROM corpus_data FOR UPDATE", "UPDATE: writes or locks rows"),
    A("SELECT * FROM corpus_data FOR NO KEY UPDATE", "UPDATE: writes or locks rows"),
    A("SELECT * FROM corpus_data FOR KEY SHARE", "SHARE: FOR SHARE locks rows"),
    A("EXPLAIN ANALYZE DELETE FROM corpus_data", "EXPLAIN ANALYZE runs", real=True),
    A("EXPLAIN (ANALYZE, COSTS off) INSERT INTO corpus_data VALUES (4)", "EXPLAIN ANALYZE"),
    A("EXPLAIN ANALYSE SELECT 1", "EXPLAIN ANALYSE runs the statement"),
]

#: The built-in runbooks' queries and other plain reads: allowed, and they run.
ALLOWED = [
    "select 1",
    "SELECT 1;",
    _PG_CLIENTS,
    "SELECT version() AS version, current_database() AS database,"
    " pg_postmaster_start_time()::text AS started",
    "SHOW max_connections",
    "SHOW ALL",
    "EXPLAIN SELECT * FROM pg_class",
    "EXPLAIN (COSTS off, VERBOSE) SELECT 1",
    "SELECT 'insert into t values (1); drop table t' AS text",
    "SELECT 1 -- ; delete from corpus_data",
    "SELECT 5 % 3",
    "SELECT '\\d+' AS pattern",
    # One literal to PostgreSQL, whatever it hides.
    f"SELECT E'\\'; {CREATE_T}; --' AS text",
    f"SELECT E'a'\n'\\'; {CREATE_T}; --' AS text",
    f"SELECT $Q$ x $q$; {CREATE_T}; $Q$ AS text",
    f"SELECT $a$ $b$; {CREATE_T}; $b$ $a$ AS text",
    f"SELECT 1 /* /* */ ; {CREATE_T}; */",
    # Names that look like calls but are not.
    "SELECT x FROM unnest(ARRAY[1]) AS pg_terminate_backend(x)",
    "WITH pg_terminate_backend(x) AS (SELECT 1) SELECT x FROM pg_terminate_backend",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3)"
    " SELECT max(n) FROM r",
    "SELECT a.pid FROM pg_stat_activity a JOIN (SELECT 1 AS n) b ON true LIMIT 1",
    "SELECT CAST(1 AS varchar(10)), 1::numeric(10, 2), now() AT TIME ZONE 'UTC'",
    # Diagnosis queries.
    "SELECT count(*) FROM pg_locks WHERE NOT granted",
    "SELECT pg_blocking_pids(pg_backend_pid())",
    "SELECT count(*) FILTER (WHERE state = 'active') FROM pg_stat_activity",
    "SELECT row_number() OVER (ORDER BY oid) FROM pg_class LIMIT 1",
    "SELECT pg_size_pretty(pg_database_size(current_database()))",
    "SELECT datname, age(datfrozenxid) FROM pg_database ORDER BY 2 DESC",
    "SELECT coalesce(sum(numbackends), 0) FROM pg_stat_database",
    "SELECT extract(epoch FROM now() - pg_postmaster_start_time())::int AS uptime_s",
    "SELECT current_setting('max_connections')::int, pg_catalog.now()",
    "SELECT relname, pg_size_pretty(pg_total_relation_size(relid)) FROM pg_stat_user_tables",
]

#: psql commands a check runs through host.run: (command, None if allowed, else the reason).
PSQL = [
    ("psql -Atc 'select 1'", None),
    ("psql -X -q -At -c 'SHOW max_connections' -d corpus -U postgres", None),
    ('psql --csv --command "select count(*) from pg_stat_activity"', None),
    ("psql -c 'select 1' -P pager=off -P format=unaligned postgres://mon@db:5432/app", None),
    ("psql -c 'select 1' -c 'select 2'", "several -c options"),
    ("psql -c '\\! touch {file}'", "the psql meta-command '\\\\!' is not SQL"),
    ("psql -c '\\copy corpus_data to {file}'", "meta-command"),
    ("psql -c " + shlex.quote(f"SELECT '\\'; COMMIT; {CREATE_T}; --'"), BACKSLASH),
    ("psql -c " + shlex.quote("COPY (SELECT 1) TO PROGRAM 'touch {file}'"), "psql -c: COPY"),
    ("psql -c 'select pg_terminate_backend({victim})'", "terminates another session"),
    ("psql -c 'select 1; create table corpus_t (i int)'", SEVERAL),
    ("psql -Atc 'select lo_import(''/etc/hostname'')'", "uses large objects"),
    ("psql -c 'select 1' -o {file}", "-o writes the output to a file"),
    ("psql -c 'select 1' --log-file={file}", "writes a log file"),
    ("psql -c 'select 1' -f /dev/null", "-f runs a script file"),
    ("psql -v ON_ERROR_STOP=1 -c 'select 1'", "-v sets psql variables"),
    ("psql -c 'select 1' -P pager=on", "the psql pager runs a program"),
    ("psql -c 'select 1' 'host=db sslkeylogfile={file}'", "connection strings"),
    ("psql -c 'select 1' --no-such-option", "--no-such-option is not known"),
    ("psql -W -c 'select 1'", "prompts for a password"),
    ("psql -f {file}", "'psql' is not on the read-only allowlist"),
    ("psql", "'psql' is not on the read-only allowlist"),
    ("psql -Atc 'select 1' | sh", "'psql' is not on the read-only allowlist"),
    ("timeout 5 psql -Atc 'select 1'", "'psql' is not on the read-only allowlist"),
    ("PGOPTIONS=-cx=y psql -Atc 'select 1'", "setting PGOPTIONS"),
]


def fill(text: str, victim: int = 424242, file: str = "/tmp/runbook-corpus-absent") -> str:
    return text.replace(VICTIM, str(victim)).replace(FILE, file)


@pytest.mark.parametrize("attempt", REFUSED, ids=lambda a: a.sql[:60])
def test_the_policy_refuses_every_attempt(attempt):
    refusal = read_only_refusal(fill(attempt.sql))
    assert refusal is not None and attempt.reason in refusal, refusal


@pytest.mark.parametrize("sql", ALLOWED, ids=lambda sql: sql[:60])
def test_the_policy_allows_plain_reads(sql):
    assert read_only_refusal(sql) is None


@pytest.fixture(scope="module")
def guard(tmp_path_factory):
    config = load_config(start=tmp_path_factory.mktemp("guard"))
    return make_policy(config, "read-only")


@pytest.mark.parametrize(("command", "reason"), PSQL, ids=[c for c, _ in PSQL])
def test_psql_commands_go_through_the_same_policy(guard, command, reason):
    violation = guard(fill(command), None, Step("c", "check", "local", read_only=True))
    if reason is None:
        assert violation is None
    else:
        assert violation is not None and reason in violation.reason, violation


def test_a_psql_list_command_is_judged_the_same(guard):
    step = Step("c", "check", "local", read_only=True)
    assert guard(shlex.join(["psql", "-Atc", "select 1"]), ["psql"], step) is None
    refused = guard(shlex.join(["psql", "-c", "select 1; select 2"]), ["psql"], step)
    assert refused is not None and SEVERAL in refused.reason


def test_the_corpus_is_large_enough():
    assert len(REFUSED) >= 100 and len(ALLOWED) >= 30 and len(PSQL) >= 20
    assert sum(attempt.real for attempt in REFUSED) >= 40


class Server:
    """The corpus database: its objects, a victim session, a listener, and their state."""

    def __init__(self, pg: Any, file: Path) -> None:
        self.pg, self.file = pg, file
        with pg.connect("postgres") as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
            admin.execute(f"CREATE DATABASE {DATABASE}")
        self.admin = pg.connect(DATABASE)
        for statement in SETUP:
            self.admin.execute(statement)
        self.victim = pg.connect(DATABASE)
        self.victim_pid = self.victim.info.backend_pid
        self.listener = pg.connect(DATABASE)
        self.listener.execute("LISTEN corpus_channel")

    @property
    def dsn(self) -> str:
        """The superuser over the Unix socket: the worst DSN a runbook could be given."""
        return f"host={self.pg.folder} port={self.pg.port} user=postgres dbname={DATABASE}"

    def state(self, client: PostgresClient) -> dict[str, Any]:
        """Everything an attempt could change, read while ``client`` is still connected."""
        one = self.admin.execute(STATE).fetchone()
        assert one is not None
        session = client.query(
            "SELECT current_setting('default_transaction_read_only') AS read_only,"
            " (SELECT count(*) FROM pg_prepared_statements) AS prepared"
        )
        self.victim.execute("SELECT 1")  # raises if the victim was terminated
        notes = list(self.listener.notifies(timeout=0.05, stop_after=1))
        return {
            **dict(zip(STATE_COLUMNS, one, strict=True)),
            **session[0],
            "victim": self.victim_pid,
            "notifications": [note.payload for note in notes],
            "file": self.file.exists(),
        }

    def close(self) -> None:
        for connection in (self.listener, self.victim, self.admin):
            connection.close()
        with self.pg.connect("postgres") as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {DATABASE}")


SETUP = [
    "CREATE TABLE corpus_data (i int)",
    "INSERT INTO corpus_data VALUES (1)",
    "CREATE SEQUENCE corpus_seq",
    "CREATE FUNCTION corpus_fn() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    f"CREATE PROCEDURE corpus_proc() LANGUAGE plpgsql AS $$ BEGIN {CREATE_T}; END $$",
]
STATE_COLUMNS = [
    "table_created",
    "tables",
    "rows",
    "sequence",
    "large_objects",
    "advisory_locks",
    "conf_loaded",
    "stats_reset",
]
STATE = """
SELECT to_regclass('corpus_t') IS NOT NULL,
       (SELECT count(*) FROM pg_class WHERE relname LIKE 'corpus%' AND relkind = 'r'),
       (SELECT count(*) FROM corpus_data),
       (SELECT last_value || ' ' || is_called FROM corpus_seq),
       (SELECT count(*) FROM pg_largeobject_metadata),
       (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'),
       pg_conf_load_time(),
       (SELECT stats_reset FROM pg_stat_database WHERE datname = current_database())
"""


@pytest.fixture(scope="module")
def server(pg, tmp_path_factory):
    server = Server(pg, pg.folder / "corpus-touched")
    yield server
    server.close()


@pytest.fixture
def client(server):
    client = PostgresClient(server.dsn)
    yield client
    client.close()


def _fill_for(server: Server, sql: str) -> str:
    return fill(sql, server.victim_pid, str(server.file))


@pytest.mark.parametrize("attempt", [a for a in REFUSED if a.real], ids=lambda a: a.sql[:60])
def test_nothing_changes_on_the_server(server, client, attempt):
    before = server.state(client)
    with pytest.raises(ReadOnlyViolation) as refused:
        client.query(_fill_for(server, attempt.sql))
    assert attempt.reason in refused.value.reason
    assert server.state(client) == before


@pytest.mark.parametrize("attempt", [a for a in REFUSED if a.layers], ids=lambda a: a.sql[:60])
def test_past_the_text_check_the_server_refuses(server, client, attempt):
    """With the text check skipped, the protocol or the read-only transaction holds."""
    before = server.state(client)
    answer = client._perform(_fill_for(server, attempt.sql), None)
    assert isinstance(answer, dict), answer
    assert "PostgreSQL refused" in answer["refused"]
    assert server.state(client) == before


@pytest.mark.parametrize("sql", ALLOWED, ids=lambda sql: sql[:60])
def test_plain_reads_run(server, client, sql):
    before = server.state(client)
    client.query(sql)
    assert server.state(client) == before


def test_the_session_is_read_only_by_default(client):
    [row] = client.query("SHOW default_transaction_read_only")
    assert row == {"default_transaction_read_only": "on"}


def test_placeholders_are_judged_as_the_server_receives_them(server, client):
    # "%s$q$" becomes "$1$q$": a parameter, then a dollar quote the raw text does not have.
    sql = f"SELECT %s$q$ a $q$; {CREATE_T}; $q$ b $q$"
    before = server.state(client)
    with pytest.raises(ReadOnlyViolation, match=SEVERAL):
        client.query(sql, (1,))
    assert server.state(client) == before
    assert client.query("SELECT %s::int + 1 AS n, 5 %% 3 AS m", (1,)) == [{"n": 2, "m": 2}]


RUNBOOK = '''
"""SQL corpus."""
import shlex
from runbook import check

PARAMS = {{"pg_dsn": ""}}
SECRETS = ["pg_dsn"]
SQL = {sql!r}
PSQL = {psql!r}


def _query(index):
    def attempt(postgres):
        postgres.query(SQL[index])
    attempt.__name__ = f"sql_{{index}}"
    return check(attempt)


def _psql(index):
    def attempt(host):
        host.run(PSQL[index])
    attempt.__name__ = f"psql_{{index}}"
    return check(attempt)


for _index in range(len(SQL)):
    globals()[f"sql_{{_index}}"] = _query(_index)
for _index in range(len(PSQL)):
    globals()[f"psql_{{_index}}"] = _psql(_index)


@check
def psql_reads(host):
    result = host.run(PSQL_READ)
    assert result.stdout.strip() == "1", result.stderr


PSQL_READ = {read!r}
'''


def test_checks_through_the_cli_are_blocked_and_change_nothing(project, server, client):
    connect = f"psql -X -h {server.pg.folder} -p {server.pg.port} -U postgres -d {DATABASE}"
    sql = [_fill_for(server, a.sql) for a in REFUSED if a.real]
    psql = [
        f"{connect} -Atc {shlex.quote(_fill_for(server, a.sql))}"
        for a in REFUSED
        if a.real and a.sql.lstrip().upper().startswith(("SELECT", "COPY", "CREATE", "WITH"))
    ]
    psql += [_fill_for(server, command.replace("psql", connect, 1)) for command, _ in PSQL[4:20]]
    source = RUNBOOK.format(sql=sql, psql=psql, read=f"{connect} -Atc 'select 1'")
    project.runbook("sql_corpus", textwrap.dedent(source))
    before = server.state(client)
    result, data = project.run_json("sql-corpus", "--param", f"pg_dsn={server.dsn}")
    outcomes = {check["id"]: check for check in data["checks"]}
    assert outcomes.pop("psql_reads")["outcome"] == "passed", result.output
    wrong = {key: (c["outcome"], c["message"]) for key, c in outcomes.items()}
    assert {outcome for outcome, _ in wrong.values()} == {"blocked"}, wrong
    assert len(outcomes) == len(sql) + len(psql)
    assert data["read_only_extensions"] == []
    assert server.state(client) == before


def test_record_and_replay_keep_a_server_refusal(project, server, client, monkeypatch):
    """A write PostgreSQL refused when recorded is refused again on replay: blocked both times."""
    import runbook.plugins.postgres as plugin

    monkeypatch.setattr(plugin, "read_only_refusal", lambda sql: None)  # a text check that errs
    project.runbook(
        "replayed",
        f'''
        """Replayed."""
        from runbook import check

        PARAMS = {{"pg_dsn": ""}}
        SECRETS = ["pg_dsn"]


        @check
        def reads(postgres):
            postgres.query("SELECT 1")


        @check
        def sneaks(postgres):
            postgres.query("{CREATE_T}")
        ''',
    )
    tape = project.root / "tape.yaml"
    before = server.state(client)
    _, recorded = project.run_json(
        "replayed", "--param", f"pg_dsn={server.dsn}", "--record", str(tape)
    )
    _, replayed = project.run_json("replayed", "--replay", str(tape))
    for data in (recorded, replayed):
        outcomes = {c["id"]: (c["outcome"], c["message"]) for c in data["checks"]}
        assert outcomes["reads"][0] == "passed"
        assert outcomes["sneaks"][0] == "blocked"
        assert "cannot execute CREATE TABLE in a read-only transaction" in outcomes["sneaks"][1]
    assert server.state(client) == before
