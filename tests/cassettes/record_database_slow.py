"""Record database-slow against a private PostgreSQL with a long query and a lock wait.

Run by record.sh (as root, from anywhere): starts a cluster with tests/pg.py, makes the
faults the fault tests make, records the run and adds its statuses to expected.json.
"""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import expect  # noqa: E402
from pg import start_cluster  # noqa: E402  (tests/pg.py)


def wait_until(admin, sql: str, params: tuple) -> None:
    for _ in range(200):
        row = admin.execute(sql, params).fetchone()
        if row and row[0]:
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for: {sql}")


def main() -> None:
    import psycopg

    cluster = start_cluster()
    try:
        admin = cluster.connect()
        admin.execute("CREATE TABLE orders (id int)")
        slow = psycopg.connect(cluster.dsn(), autocommit=True)
        slow_pid = slow.info.backend_pid
        slow.pgconn.send_query(b"SELECT pg_sleep(60)")  # runs on while the runbook looks
        holder = cluster.connect()
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        waiter = cluster.connect()
        waiter.pgconn.send_query(b"SELECT count(*) FROM orders")
        wait_until(
            admin,
            "SELECT %s = ANY(pg_blocking_pids(%s))",
            (holder.info.backend_pid, waiter.info.backend_pid),
        )
        wait_until(
            admin,
            "SELECT now() - query_start > interval '1.5 s' FROM pg_stat_activity WHERE pid = %s",
            (slow_pid,),
        )
        with tempfile.TemporaryDirectory() as scratch:
            result = Path(scratch) / "result.json"
            subprocess.run(
                [
                    "runbook",
                    "run",
                    "database-slow",
                    "--record",
                    str(HERE / "database-slow.yaml"),
                    "--json",
                    str(result),
                    "--report",
                    str(Path(scratch) / "report.md"),
                    "-q",
                    "--param",
                    f"pg_dsn={cluster.dsn()}",
                    "--param",
                    "long_query_seconds=1",
                    "--param",
                    "lock_wait_seconds=0",
                    "--param",
                    "cache_min_blocks=1",
                ],
                cwd=scratch,
                check=False,
                stdout=subprocess.DEVNULL,
            )
            expect.main("database-slow", str(result))
        for connection in (slow, waiter):
            connection.cancel_safe()
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
