"""Pytest fixtures that run a private PostgreSQL cluster on loopback for the postgres tests.

One cluster per test session: ``initdb`` into a temporary folder owned by the
``postgres`` OS user (tests run as root, so ``initdb`` and ``pg_ctl`` run
through ``runuser -u postgres --``), listening on 127.0.0.1 only, on a free
port, with its Unix socket in the same folder and ``max_connections=30``. The
``postgres`` superuser connects over the socket without a password (for the
tests that make faults); the ``runbook_monitor`` role (``pg_monitor`` only)
connects over TCP with a password, as a runbook would. Stopped with
``pg_ctl stop`` (then by PID) at teardown. Registered from conftest.py with
``pytest_plugins = ["pg"]``.
"""

from __future__ import annotations

import dataclasses
import glob
import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sshd import free_port
from sshd import unavailable

SETUP_HINT = (
    "apt-get install -y postgresql && pip install 'psycopg[binary]>=3.1' (see .ci/setup-machine)"
)
MAX_CONNECTIONS = 30
MONITOR = "runbook_monitor"
DATABASE = "runbook_test"


def pg_bin() -> Path:
    """Return the newest installed PostgreSQL's bin folder, or skip (fail in CI)."""
    if importlib.util.find_spec("psycopg") is None:
        unavailable(f"psycopg is not installed: {SETUP_HINT}")
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path is None:
        unavailable(f"PostgreSQL is not installed: {SETUP_HINT}")
    return Path(str(on_path)).parent


@dataclasses.dataclass
class PgCluster:
    """A running private PostgreSQL server: where it listens and how to reach it."""

    folder: Path
    bin: Path
    port: int
    password: str
    prefix: list[str]

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def dsn(self, dbname: str = DATABASE) -> str:
        """The DSN a runbook gets: the monitoring role over TCP, with its password."""
        return (
            f"postgresql://{MONITOR}:{self.password}@127.0.0.1:{self.port}/{dbname}"
            "?connect_timeout=5"
        )

    def connect(self, dbname: str = DATABASE, **kwargs: Any) -> Any:
        """A superuser connection over the Unix socket (autocommit), to make faults."""
        import psycopg

        return psycopg.connect(
            host=str(self.folder),
            port=self.port,
            user="postgres",
            dbname=dbname,
            autocommit=True,
            **kwargs,
        )

    def log(self) -> str:
        path = self.folder / "postgres.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Stop the server with ``pg_ctl stop``, by PID if that fails, and remove its folder."""
        pidfile = self.data / "postmaster.pid"
        stop = [*self.prefix, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w"]
        done = subprocess.run([*stop, "stop"], capture_output=True, timeout=60)
        if done.returncode != 0 and pidfile.exists():
            pid = int(pidfile.read_text().split()[0])
            try:
                os.kill(pid, signal.SIGQUIT)  # immediate shutdown
            except ProcessLookupError:
                pass  # already gone
        shutil.rmtree(self.folder, ignore_errors=True)


def start_cluster() -> PgCluster:
    """Create and start a private cluster; create the monitoring role and the test database."""
    bin_dir = pg_bin()
    prefix: list[str] = []
    owner = None
    if os.geteuid() == 0:  # initdb refuses to run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            unavailable(f"no postgres OS user to run PostgreSQL as: {SETUP_HINT}")
        if shutil.which("runuser") is None:
            unavailable("runuser is not installed (util-linux)")
        prefix = ["runuser", "-u", "postgres", "--"]
    folder = Path(tempfile.mkdtemp(prefix="runbook-pg-"))
    if owner is not None:
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    password = f"pw-{secrets.token_hex(8)}"
    initdb = [*prefix, str(bin_dir / "initdb"), "-D", str(folder / "data"), "-U", "postgres"]
    initdb += ["--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"]
    done = subprocess.run(initdb, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.fail(f"initdb failed:\n{done.stdout}{done.stderr}", pytrace=False)
    for _attempt in range(5):  # another process may take the free port first
        port = free_port("127.0.0.1")
        cluster = PgCluster(folder, bin_dir, port, password, prefix)
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -k {folder}"
            f" -c max_connections={MAX_CONNECTIONS} -c shared_buffers=16MB"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        start = [*prefix, str(bin_dir / "pg_ctl"), "-D", str(folder / "data")]
        start += ["-l", str(folder / "postgres.log"), "-o", options, "-w", "-t", "30", "start"]
        done = subprocess.run(start, capture_output=True, text=True, timeout=60)
        if done.returncode == 0:
            break
    else:
        log = cluster.log()
        shutil.rmtree(folder, ignore_errors=True)
        pytest.fail(f"PostgreSQL did not start:\n{done.stderr}\n{log}", pytrace=False)
    try:
        with cluster.connect("postgres") as admin:
            admin.execute(f"CREATE ROLE {MONITOR} LOGIN PASSWORD '{password}' IN ROLE pg_monitor")
            admin.execute(f"CREATE DATABASE {DATABASE}")
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="session")
def pg() -> Iterator[PgCluster]:
    """A private PostgreSQL server on 127.0.0.1 (max_connections=30), stopped at the end."""
    cluster = start_cluster()
    yield cluster
    cluster.stop()
