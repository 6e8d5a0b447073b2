"""The built-in high-error-rate runbook against real faults: real logs, processes and ports.

Each test writes an application log whose timestamps are relative to now (a quiet
baseline hour, then whatever the fault adds in the last minutes), starts what the
fault needs (a process with a distinctive name, a closed or listening port) and
runs the runbook through the CLI. The ``logs`` plugin is registered through the
project's ``runbook.toml``, as a user would add it.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from resultdata import assert_passed_checks_say_what_they_measured
from resultdata import by_id
from sshd import free_port

HYPOTHESES = ["error-spike", "recent-deploy", "dependency-refusing"]
PLUGINS = 'plugins = ["runbook.plugins.logs"]\n'


def stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def quiet_hour(now: dt.datetime) -> list[str]:
    """An hour of INFO lines ending 6 minutes ago, with two errors in it."""
    lines = [
        f"{stamp(now - dt.timedelta(minutes=minutes))} INFO GET /orders 200 12ms"
        for minutes in range(66, 5, -1)
    ]
    lines[20] = f"{stamp(now - dt.timedelta(minutes=46))} ERROR TimeoutError: upstream slow"
    lines[40] = f"{stamp(now - dt.timedelta(minutes=26))} ERROR TimeoutError: upstream slow"
    return lines


def spike(start: dt.datetime, count: int, text: str, seconds: float = 1.5) -> list[str]:
    """``count`` error lines from ``start``, one every ``seconds``."""
    return [
        f"{stamp(start + dt.timedelta(seconds=index * seconds))},042 {text}"
        for index in range(count)
    ]


def write_log(folder: Path, lines: list[str]) -> Path:
    log = folder / "app.log"
    log.write_text("\n".join(lines) + "\n")
    return log


def run(project, log: Path, *args: str) -> tuple[object, dict]:
    result, data = project.run_json("high-error-rate", "--param", f"log_file={log}", *args)
    assert not [command for command in data["commands"] if command["blocked"]], data["commands"]
    return result, data


def statuses(data: dict) -> dict[str, str]:
    found = {h["id"]: h["status"] for h in data["hypotheses"]}
    assert list(found) == HYPOTHESES
    return found


def reasons(data: dict, hypothesis: str) -> str:
    return "\n".join(by_id(data["hypotheses"])[hypothesis]["evidence"])


@pytest.fixture
def logs_project(project):
    project.write("runbook.toml", PLUGINS)
    return project


@pytest.fixture
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A real process with a distinctive name (a copy of sleep), started now."""
    name = f"rbdep-{secrets.token_hex(4)}"  # 14 characters: pgrep -x sees all of it
    program = tmp_path_factory.mktemp("svc") / name
    shutil.copy(shutil.which("sleep") or "/bin/sleep", program)
    process = subprocess.Popen([str(program), "600"])
    try:
        yield name, process.pid
    finally:
        process.kill()
        process.wait()


def test_an_error_spike_is_ruled_in_naming_the_type_and_count(logs_project, tmp_path):
    now = dt.datetime.now()
    lines = quiet_hour(now) + spike(
        now - dt.timedelta(minutes=4), 120, "ERROR DatabaseError: pool exhausted", seconds=1.9
    )
    log = write_log(tmp_path, lines)
    result, data = run(logs_project, log)
    assert statuses(data) == {
        "error-spike": "ruled_in",
        "recent-deploy": "ruled_out",
        "dependency-refusing": "ruled_out",
    }, [c["message"] for c in data["checks"]]
    reason = reasons(data, "error-spike")
    assert reason.startswith("120 errors in the last 5 min (24.0/min) vs 2 in the 60 min before")
    assert reason.endswith(": DatabaseError 120"), reason
    checks = by_id(data["checks"])
    assert checks["error_rate_is_low"]["outcome"] == "failed"  # the symptom is confirmed
    [table, _] = checks["errors_not_above_baseline"]["evidence"]
    assert table["title"] == "Errors by type and window"
    assert "DatabaseError" in table["body"] and "TimeoutError" in table["body"]
    assert by_id(data["actions"])["restart_service"]["status"] == "planned"
    assert by_id(data["actions"])["roll_back_deploy"]["status"] == "not_needed"
    assert result.exit_code == 1


def test_errors_right_after_a_process_start_rule_in_a_recent_deploy(
    logs_project, tmp_path, service
):
    name, pid = service
    now = dt.datetime.now()
    # The first error comes two seconds after the process started.
    errors = spike(now + dt.timedelta(seconds=2), 30, "ERROR KeyError: 'price'", seconds=0.1)
    log = write_log(tmp_path, quiet_hour(now) + errors)
    _, data = run(logs_project, log, "--param", f"service={name}")
    found = statuses(data)
    assert found["recent-deploy"] == "ruled_in", [c["message"] for c in data["checks"]]
    assert found["dependency-refusing"] == "ruled_out"
    reason = reasons(data, "recent-deploy")
    assert re.fullmatch(
        rf"the first error in the window \(.*\) came [0-3]\.\d min after {name} \(pid {pid}\) "
        r"started at .* \(within 10 min\)",
        reason,
    ), reason
    assert by_id(data["actions"])["roll_back_deploy"]["status"] == "planned"


def test_errors_that_began_before_the_process_started_rule_a_deploy_out(
    logs_project, tmp_path, service
):
    name, pid = service
    now = dt.datetime.now()
    errors = spike(now - dt.timedelta(minutes=4), 30, "ERROR KeyError: 'price'", seconds=5)
    log = write_log(tmp_path, quiet_hour(now) + errors)
    _, data = run(logs_project, log, "--param", f"service={name}")
    assert statuses(data)["recent-deploy"] == "ruled_out"
    assert re.fullmatch(
        r"the first error in the window \(\S+ \S+\) came before "
        rf"{name} \(pid {pid}\) started at \S+ \S+",
        reasons(data, "recent-deploy"),
    ), reasons(data, "recent-deploy")


def test_a_restart_marker_in_the_log_counts_as_a_restart(logs_project, tmp_path):
    now = dt.datetime.now()
    lines = [*quiet_hour(now), f"{stamp(now - dt.timedelta(minutes=3))} INFO Starting app v2.4.1"]
    lines += spike(now - dt.timedelta(minutes=2), 25, "ERROR AttributeError: x", seconds=2)
    _, data = run(logs_project, write_log(tmp_path, lines))
    assert statuses(data)["recent-deploy"] == "ruled_in"
    assert "after log line 'Starting' started at" in reasons(data, "recent-deploy")


def test_a_dependency_refusing_connections_is_ruled_in_naming_it(logs_project, tmp_path):
    port = free_port("127.0.0.1")  # nothing listens on it: connections are refused
    now = dt.datetime.now()
    text = f"ERROR ConnectionRefusedError: [Errno 111] Connection refused (127.0.0.1:{port})"
    log = write_log(tmp_path, quiet_hour(now) + spike(now - dt.timedelta(minutes=3), 6, text))
    _, data = run(logs_project, log, "--param", f"dependency=127.0.0.1:{port}")
    assert statuses(data) == {
        "error-spike": "ruled_out",  # six errors are under min_errors
        "recent-deploy": "ruled_out",
        "dependency-refusing": "ruled_in",
    }, [c["message"] for c in data["checks"]]
    checks = by_id(data["checks"])
    assert checks["log_shows_no_refused_connections"]["message"].startswith(
        f"6 refused connections to 127.0.0.1:{port} in the last 5 min in {log}"
    )
    assert checks["dependency_accepts_connections"]["message"] == (
        f"127.0.0.1:{port} refuses connections from local"
    )


def test_a_quiet_log_and_a_listening_dependency_rule_nothing_in(logs_project, tmp_path):
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        port = listener.getsockname()[1]
        log = write_log(tmp_path, quiet_hour(dt.datetime.now()))
        result, data = run(logs_project, log, "--param", f"dependency=127.0.0.1:{port}")
    finally:
        listener.close()
    assert set(statuses(data).values()) == {"ruled_out"}, [c["message"] for c in data["checks"]]
    assert by_id(data["checks"])["error_rate_is_low"]["outcome"] == "passed"
    assert {a["status"] for a in data["actions"]} == {"not_needed"}
    assert result.exit_code == 0, result.output
    # What was counted, against which threshold, and in which log.
    assert by_id(data["checks"])["error_rate_is_low"]["message"] == (
        f"0 errors in the last 5 minutes in {log}, threshold 20"
    )
    assert reasons(data, "error-spike") == (
        "0 errors in the last 5 min vs 2 in the 60 min before (0.0x the rate); "
        "a spike is 5x and 20 errors"
    )
    assert reasons(data, "recent-deploy") == "no error in the last 5 min to blame on a (re)start"
    assert reasons(data, "dependency-refusing").splitlines() == [
        f"0 refused connections in the last 5 min in {log}, threshold 1",
        f"127.0.0.1:{port} accepts connections from local",
    ]
    assert_passed_checks_say_what_they_measured(data)


def test_a_200_mb_log_is_counted_on_the_target_and_only_counts_come_back(logs_project, tmp_path):
    now = dt.datetime.now()
    old = f"{stamp(now - dt.timedelta(hours=5))} INFO GET /orders 200 12ms user=42 " + "x" * 60
    block = ((old + "\n") * 20000).encode()
    log = tmp_path / "app.log"
    with log.open("wb") as out:
        while out.tell() < 200 * 10**6:
            out.write(block)
        tail = quiet_hour(now) + spike(now - dt.timedelta(minutes=4), 120, "ERROR DatabaseError")
        out.write(("\n".join(tail) + "\n").encode())
    size = log.stat().st_size
    _, data = run(logs_project, log)
    assert statuses(data)["error-spike"] == "ruled_in"
    [_, scan] = by_id(data["checks"])["errors_not_above_baseline"]["evidence"]
    pattern = r"\((\d+) bytes\) read on the target; (\d+) bytes of counts came back"
    match = re.search(pattern, scan["body"])
    assert match, scan["body"]
    assert int(match[1]) == size
    assert int(match[2]) < 10_000, scan["body"]  # the counts, not the 200 MB log


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder under /tmp that the SSH user may enter (mkdtemp makes it 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="high-error-rate-", dir="/tmp"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def test_an_error_spike_is_found_over_ssh(remote_project, sshd, shared_folder):
    now = dt.datetime.now()
    log = write_log(
        shared_folder, quiet_hour(now) + spike(now - dt.timedelta(minutes=4), 60, "ERROR IOError")
    )
    log.chmod(0o644)
    _, data = run(remote_project, log, "-H", f"127.0.0.2:{sshd.port}")
    assert data["hosts"][0]["status"] == "ok", data["hosts"]
    target = data["hosts"][0]["name"]
    assert data["hosts"][0]["uri"] == f"ssh://{sshd.user}@127.0.0.2:{sshd.port}"
    hypotheses = by_id(data["hypotheses"])
    assert hypotheses["error-spike"]["hosts"] == {target: "ruled_in"}
    assert hypotheses["error-spike"]["evidence"][0].endswith(": IOError 60")
    assert statuses(data)["dependency-refusing"] == "ruled_out"


def test_high_error_rate_lints_and_dry_runs_cleanly(tmp_path):
    (tmp_path / "runbook.toml").write_text(PLUGINS)

    def runbook(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "runbook", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={**os.environ, "NO_COLOR": "1"},
            timeout=120,
        )

    lint = runbook("lint", "high-error-rate")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    dry = runbook("run", "high-error-rate", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "restart_service" in dry.stdout and "roll_back_deploy" in dry.stdout
    for hypothesis in HYPOTHESES:
        assert hypothesis in dry.stdout


def test_a_journal_unit_is_read_instead_of_the_log_file(logs_project):
    """Where the journal cannot be read, the checks say why and rule nothing in or out."""
    journal = subprocess.run(
        ["journalctl", "-n", "1", "--no-pager"], capture_output=True, text=True, check=False
    )
    if "No journal files" not in journal.stderr:
        pytest.skip("this machine has a journal; the plugin's tests count a real unit there")
    result, data = run(
        logs_project, Path("/nonexistent.log"), "--param", "journal_unit=app.service"
    )
    assert set(statuses(data).values()) == {"inconclusive"}
    check = by_id(data["checks"])["errors_not_above_baseline"]
    assert check["outcome"] == "error", check
    assert "cannot read the journal of app.service on local: No journal files" in check["message"]
    pipeline = [c["command"] for c in data["commands"] if c["command"].startswith("journalctl")]
    assert pipeline and pipeline[0].startswith("journalctl -u app.service --since ")
    assert " | awk " in pipeline[0]
    assert result.exit_code == 1


def test_refused_connections_name_the_dependency_the_log_names(logs_project, tmp_path):
    # No dependency parameter: the log itself says who refuses (db:5432 most, then redis).
    now = dt.datetime.now()
    start = now - dt.timedelta(minutes=3)
    db = "ERROR Connection refused: could not connect to db:5432"
    redis = "ERROR dial tcp 10.0.0.7:6379: connect: connection refused"
    lines = quiet_hour(now) + spike(start, 30, db) + spike(start, 5, redis, seconds=10)
    result, data = run(logs_project, write_log(tmp_path, sorted(lines)))
    assert statuses(data)["dependency-refusing"] == "ruled_in", data["checks"]
    [reason] = by_id(data["hypotheses"])["dependency-refusing"]["evidence"]
    assert reason.startswith(
        "35 refused connections to db:5432 (30), 10.0.0.7:6379 (5) in the last 5 min in "
    ), reason
    assert reason.endswith("threshold 1)")
    table = by_id(data["checks"])["log_shows_no_refused_connections"]["evidence"][0]["body"]
    assert table.splitlines()[0].split()[0] == "peer" and "db:5432" in table
    checks = by_id(data["checks"])
    probe = checks["dependency_accepts_connections"]
    assert (probe["outcome"], probe["message"]) == ("skipped", "needs --param dependency=HOST:PORT")
    assert (data["severity"], data["severity_source"]) == ("P2", "runbook")
    assert result.exit_code == 1


@pytest.mark.parametrize(
    ("line", "peer"),
    [
        ("ERROR connect ECONNREFUSED [::1]:5432", "[::1]:5432"),
        (
            'FATAL connection to server at "pg-main" (10.1.2.3), port 5433 failed: '
            "Connection refused",
            "pg-main:5433",
        ),
        ("ERROR POST http://payments:8443/pay: Connection refused", "payments:8443"),
        ("ERROR java.net.ConnectException: Connection refused", None),
    ],
)
def test_the_refused_peer_is_read_from_common_log_shapes(logs_project, tmp_path, line, peer):
    now = dt.datetime.now()
    lines = quiet_hour(now) + spike(now - dt.timedelta(minutes=2), 3, line)
    _, data = run(logs_project, write_log(tmp_path, lines))
    [reason] = by_id(data["hypotheses"])["dependency-refusing"]["evidence"]
    wanted = f"3 refused connections to {peer} in" if peer else "(the lines name no host:port)"
    assert wanted in reason, reason
