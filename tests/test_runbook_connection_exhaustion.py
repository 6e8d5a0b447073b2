"""The built-in connection-exhaustion runbook against real faults on 127.0.0.1.

Each fault is real: a child process that holds thousands of TCP connections to its own
listener (with RLIMIT_NOFILE raised for it, not for pytest), a pile of TIME_WAIT sockets
left by connections this test opens and closes first, and a child that lowers its own
open-files soft limit to 256 and opens 240 files. The connection holder closes with
SO_LINGER 0 (RST), leaving no TIME_WAIT sockets behind; the TIME_WAIT test runs last, so
its 1,200 sockets (they wait 60 s) cannot reach the default threshold (5,000) of the
tests before it unless the file runs four times within a minute.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import resource
import socket
import subprocess
import sys
from collections.abc import Callable
from collections.abc import Iterator

import pytest
from resultdata import assert_passed_checks_say_what_they_measured
from resultdata import by_id
from resultdata import check_evidence
from resultdata import evidence_of
from resultdata import statuses
from sshd import USER
from sshd import SSHServer
from sshd import unavailable

from runbook.safety.guard import check_command

SYSTEM_PYTHON = "/usr/bin/python3"
HYPOTHESES = ["too-many-connections", "fd-limit", "postgres-max-connections"]
CONNECTIONS = 2000

CONNECTOR = """
import resource, socket, struct, sys, time
count = int(sys.argv[1])
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(128)
held = []
for _ in range(count):
    client = socket.create_connection(listener.getsockname())
    # Reset on exit instead of leaving TIME_WAIT sockets for the next tests.
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    server, _ = listener.accept()
    held += [client, server]
print("ready", listener.getsockname()[1], flush=True)
time.sleep(120)
"""

FD_HOG = """
import os, resource, sys, time
soft, count = int(sys.argv[1]), int(sys.argv[2])
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
# Any file its user may read: /dev/null is root's alone in some sandboxes.
held = [open(os.path.realpath(sys.executable), "rb") for _ in range(count)]
print("ready", flush=True)
time.sleep(120)
"""


def assert_read_only(data):
    """No command was blocked, and each one the runbook ran passes the read-only guard."""
    assert not [command for command in data["commands"] if command["blocked"]]
    for command in data["commands"]:
        check_command(command["command"], None)


@pytest.fixture
def child() -> Iterator[Callable[..., tuple[subprocess.Popen[str], list[str]]]]:
    """Start Python children that print ``ready ...`` when their fault is in place."""
    started: list[subprocess.Popen[str]] = []

    def start(
        script: str, *args: object, user: str | None = None
    ) -> tuple[subprocess.Popen[str], list[str]]:
        python = sys.executable
        if user is not None:
            # This test's interpreter may sit where other users cannot run it (/root).
            python = SYSTEM_PYTHON
            if not os.access(python, os.X_OK):
                unavailable(f"{python} is needed to run a process as {user}")
        process = subprocess.Popen(
            [python, "-c", script, *map(str, args)],
            stdout=subprocess.PIPE,
            text=True,
            user=user,
            group=None if user is None else pwd.getpwnam(user).pw_gid,
            extra_groups=None if user is None else [],
        )
        started.append(process)
        assert process.stdout is not None
        words = process.stdout.readline().split()
        assert words[:1] == ["ready"], process.wait()
        return process, words[1:]

    yield start
    for process in started:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def comm(pid: int) -> str:
    """The kernel's name of a process: ``python3``, or ``python`` from a venv's symlink."""
    with open(f"/proc/{pid}/comm") as name:
        return name.read().strip()


def time_wait_to(port: int) -> int:
    listing = subprocess.run(
        ["ss", "-tanH", "state", "time-wait", "dst", f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return len(listing.stdout.splitlines())


def test_a_quiet_machine_rules_nothing_in(project):
    baseline = subprocess.run(["ss", "-tanH"], capture_output=True, text=True, check=True)
    result, data = project.run_json("connection-exhaustion")
    assert (data["runbook"]["name"], data["runbook"]["title"]) == (
        "connection-exhaustion",
        "Connection exhaustion",
    )
    found = statuses(data)
    assert list(found) == HYPOTHESES
    assert found["too-many-connections"] == "ruled_out", baseline.stdout[-2000:]
    # Root may still be denied some processes' descriptors (a sandbox's pid 1).
    assert found["fd-limit"] in ("ruled_out", "inconclusive")
    assert found["postgres-max-connections"] == "untested"
    checks = by_id(data["checks"])
    assert checks["connections_are_accepted"]["outcome"] == "passed"
    assert "TCP sockets by state" in {
        item["title"] for item in checks["tcp_connections_within_limits"]["evidence"]
    }
    assert {a["status"] for a in data["actions"]} == {"not_needed"}
    # Nothing found: no severity is claimed, neither suggested nor the runbook's P1 default.
    assert (data["severity"], data["severity_suggested"], data["severity_source"]) == (
        None,
        None,
        None,
    )
    assert_read_only(data)
    assert result.exit_code == 0, result.output
    # What was counted, against which threshold, and about whom.
    assert re.fullmatch(
        r"(no connection waits in the accept queues of \d+ listeners|"
        r"fullest accept queue \d+/\d+ on \S+|no TCP listener); "
        r"\d+ of \d+ file handles, limit 90%",
        checks["connections_are_accepted"]["message"],
    ), checks["connections_are_accepted"]["message"]
    [sockets] = evidence_of(data, "too-many-connections")
    assert re.fullmatch(
        r"\d+ TCP connections, threshold 10000; \d+ in TIME-WAIT, threshold \d+", sockets
    ), sockets
    if found["fd-limit"] == "ruled_out":
        [files] = evidence_of(data, "fd-limit")
        assert re.fullmatch(
            r"\d+ of \d+ open files in .+ \(pid \d+\), the closest to its limit; "
            r"threshold 90%",
            files,
        ), files
    assert_passed_checks_say_what_they_measured(data)


def test_thousands_of_connections_are_ruled_in_with_their_port_and_process(project, child):
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 2 * CONNECTIONS + 100:
        unavailable(f"the open-files hard limit ({hard}) is too low to hold {CONNECTIONS}")
    process, [port] = child(CONNECTOR, CONNECTIONS)
    result, data = project.run_json(
        "connection-exhaustion",
        "--param",
        "connections_threshold=3000",
        "--param",
        "time_wait_threshold=1000000",
    )
    found = statuses(data)
    assert found["too-many-connections"] == "ruled_in", data["checks"]
    [reason] = by_id(data["hypotheses"])["too-many-connections"]["evidence"]
    assert "(threshold 3000)" in reason and " ESTAB" in reason, reason
    assert f"top local 127.0.0.1:{port} ({CONNECTIONS})" in reason, reason
    assert f"top remote 127.0.0.1:{port} ({CONNECTIONS})" in reason, reason
    name = comm(process.pid)
    assert f"held most by {name} (pid {process.pid}) ({2 * CONNECTIONS})" in reason, reason
    table = check_evidence(data, "tcp_connections_within_limits")
    assert f"127.0.0.1:{port}" in table and str(process.pid) in table
    assert found["fd-limit"] != "ruled_in"  # it raised its own limit first
    assert by_id(data["actions"])["restart_service"]["status"] == "planned"
    assert_read_only(data)
    assert result.exit_code == 1


def test_a_process_near_its_open_files_limit_is_ruled_in(project, child):
    process, _ = child(FD_HOG, 256, 240)
    result, data = project.run_json("connection-exhaustion")
    found = statuses(data)
    assert found["fd-limit"] == "ruled_in", data["checks"]
    [reason] = by_id(data["hypotheses"])["fd-limit"]["evidence"]
    assert f"{comm(process.pid)} (pid {process.pid}) has 24" in reason, reason
    assert "of its limit of 256 (threshold 90%)" in reason, reason
    table = check_evidence(data, "processes_below_open_files_limit")
    assert str(process.pid) in table and "256" in table
    assert found["too-many-connections"] == "ruled_out"
    assert by_id(data["actions"])["restart_service"]["status"] == "planned"
    assert_read_only(data)
    assert result.exit_code == 1


PG_ENV = ("PGHOST", "PGHOSTADDR", "PGSERVICE", "PGDATABASE", "PGPASSWORD")


@pytest.fixture
def pg_quiet(pg, monkeypatch) -> list[str]:
    """CLI arguments that point the runbook at the private cluster (tests/pg.py)."""
    for name in PG_ENV:
        monkeypatch.delenv(name, raising=False)
    return ["--param", f"pg_dsn={pg.dsn()}"]


def assert_no_password(project, pg, result, data, audit_log) -> None:
    report = (project.root / "connection-exhaustion.md").read_text()
    for text in (result.output, report, str(data), audit_log.read_text()):
        assert pg.password not in text
        assert pg.dsn() not in text
    assert data["params"]["pg_dsn"] == "***"


def test_the_postgres_check_is_skipped_without_a_dsn(project):
    _, data = project.run_json("connection-exhaustion")
    check = by_id(data["checks"])["postgres_below_max_connections"]
    assert (check["outcome"], check["message"]) == ("skipped", "needs --param pg_dsn=DSN")
    assert statuses(data)["postgres-max-connections"] == "untested"


def test_a_quiet_postgres_is_ruled_out(project, pg, pg_quiet, private_audit_log):
    result, data = project.run_json("connection-exhaustion", *pg_quiet)
    check = by_id(data["checks"])["postgres_below_max_connections"]
    assert check["outcome"] == "passed", check
    assert statuses(data)["postgres-max-connections"] == "ruled_out"
    body = check_evidence(data, "postgres_below_max_connections")
    assert "runbook_monitor" in body and "max_connections" in body, body
    # One of the 27 slots (30 minus 3 reserved for superusers) is the runbook's own.
    assert check["message"] == (
        f"1 of 27 connection slots in use on 127.0.0.1:{pg.port}/runbook_test (4%), threshold 80%"
    )
    assert_no_password(project, pg, result, data, private_audit_log)


@pytest.fixture
def many_pg_connections(pg) -> Iterator[list[object]]:
    """24 idle superuser connections: with the runbook's own, 25 of max_connections=30."""
    connections = [pg.connect() for _ in range(24)]
    yield connections
    for connection in connections:
        connection.close()


def test_postgres_near_max_connections_is_ruled_in_naming_the_counts(
    project, pg, pg_quiet, many_pg_connections, private_audit_log
):
    result, data = project.run_json("connection-exhaustion", *pg_quiet)
    assert statuses(data)["postgres-max-connections"] == "ruled_in", data["checks"]
    [reason] = by_id(data["hypotheses"])["postgres-max-connections"]["evidence"]
    assert reason.startswith(
        f"25 of 27 connection slots in use on 127.0.0.1:{pg.port}/runbook_test"
        " (93%, threshold 80%; max_connections 30 minus 3 reserved for superusers): "
    ), reason
    assert "24 idle" in reason and "1 active" in reason, reason
    assert reason.endswith(
        "; top application (none) (24), user postgres (24), client local (24)"
    ), reason
    body = check_evidence(data, "postgres_below_max_connections")
    for word in ("runbook_monitor", "127.0.0.1", "postgres", "usable_slots", "idle"):
        assert word in body, body
    assert result.exit_code == 1
    assert_no_password(project, pg, result, data, private_audit_log)
    # A higher threshold rules it out again.
    _, data = project.run_json(
        "connection-exhaustion", *pg_quiet, "--param", "pg_connections_percent=95"
    )
    assert statuses(data)["postgres-max-connections"] == "ruled_out", data["checks"]


def test_connection_exhaustion_lints_and_dry_runs_cleanly(project):
    lint = project.run("lint", "connection-exhaustion")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    dry = project.run("run", "connection-exhaustion", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    for name in ("processes_below_open_files_limit", "restart_service", *HYPOTHESES):
        assert name in dry.stdout


def test_connection_exhaustion_over_ssh_names_the_remote_users_process(
    remote_project, sshd: SSHServer, child
):
    project = remote_project
    # The login user sees its own processes' descriptors only: the hog runs as that user.
    process, _ = child(FD_HOG, 256, 240, user=USER)
    done = project.run(
        "run", "connection-exhaustion", "-H", f"127.0.0.2:{sshd.port}", "--json", "result.json"
    )
    data = json.loads((project.root / "result.json").read_text())
    assert data["hosts"][0]["status"] == "ok", done.stdout + done.stderr
    found = statuses(data)
    assert found["fd-limit"] == "ruled_in", done.stdout
    [reason] = by_id(data["hypotheses"])["fd-limit"]["evidence"]
    assert f"(pid {process.pid}) has 24" in reason, reason
    assert found["too-many-connections"] == "ruled_out"
    assert_read_only(data)
    assert done.returncode == 1
    # Without the hog, root's processes stay unreadable: inconclusive, not ruled out.
    process.kill()
    process.wait()
    project.run(
        "run", "connection-exhaustion", "-H", f"127.0.0.2:{sshd.port}", "--json", "result.json"
    )
    data = json.loads((project.root / "result.json").read_text())
    assert statuses(data)["fd-limit"] == "inconclusive"
    check = by_id(data["checks"])["processes_below_open_files_limit"]
    assert check["verdict"] == "inconclusive"
    message = check["message"]
    assert "could not be read" in message and "run as root" in message, message


def test_a_time_wait_pile_up_is_ruled_in(project):
    piles = 1200
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        port = listener.getsockname()[1]
        for _ in range(piles):
            client = socket.create_connection(("127.0.0.1", port))
            server, _ = listener.accept()
            client.close()  # the side that closes first waits in TIME_WAIT
            server.close()
    assert time_wait_to(port) >= piles
    result, data = project.run_json(
        "connection-exhaustion",
        "--param",
        "time_wait_threshold=1000",
        "--param",
        "connections_threshold=1000000",
    )
    found = statuses(data)
    assert found["too-many-connections"] == "ruled_in", data["checks"]
    [reason] = by_id(data["hypotheses"])["too-many-connections"]["evidence"]
    assert "sockets in TIME-WAIT (threshold 1000; " in reason, reason
    # Piles from earlier runs may still wait: the top three destinations are named.
    assert f"127.0.0.1:{port} ({piles})" in reason.partition("most to ")[2], reason
    assert found["fd-limit"] != "ruled_in"
    assert "TIME-WAIT" in check_evidence(data, "tcp_connections_within_limits")
    assert_read_only(data)
    assert result.exit_code == 1
