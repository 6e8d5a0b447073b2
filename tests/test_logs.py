"""The ``logs`` plugin: its parsers as tables, and the awk counter on real files.

The counter runs its awk program through a ``Host`` on this machine; the exact
command line it sends is checked against the read-only guard.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import shlex
import subprocess
import time
from pathlib import Path

import pytest
from runbook.plugins.logs import ErrorCounts
from runbook.plugins.logs import ErrorType
from runbook.plugins.logs import LogCounter
from runbook.plugins.logs import error_counts
from runbook.plugins.logs import journal_command
from runbook.plugins.logs import journal_error_counts
from runbook.plugins.logs import parse_date
from runbook.plugins.logs import parse_error_counts
from runbook.plugins.logs import parse_log_timestamp

from runbook.hosts.host import Host
from runbook.hosts.local import LocalBackend
from runbook.pluginmanager import load_config
from runbook.safety.guard import check_command
from runbook.safety.guard import make_policy


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("2026-11-24 00:07:31 ERROR x", dt.datetime(2026, 11, 24, 0, 7, 31)),
        ("2026-11-24T00:07:31.123Z ERROR x", dt.datetime(2026, 11, 24, 0, 7, 31)),
        ("[2026-11-24 00:07:31,5] CRITICAL", dt.datetime(2026, 11, 24, 0, 7, 31)),
        ("2026-11-24 00:07:31", dt.datetime(2026, 11, 24, 0, 7, 31)),
    ],
)
def test_parse_log_timestamp(line, expected):
    assert parse_log_timestamp(line) == expected


@pytest.mark.parametrize("line", ["", "Nov 24 00:07:31 host app: ERROR", "2026-13-01 00:00:00"])
def test_parse_log_timestamp_refuses_lines_without_one(line):
    with pytest.raises(ValueError, match="no timestamp"):
        parse_log_timestamp(line)


def test_parse_date_keeps_the_offset():
    parsed = parse_date("2026-11-24 01:07:31 +0100\n")
    assert parsed == dt.datetime(2026, 11, 24, 0, 7, 31, tzinfo=dt.UTC)
    with pytest.raises(ValueError, match="not a date"):
        parse_date("Tue Nov 24 00:07:31 UTC 2026")


def test_parse_error_counts_merges_periods_and_orders_by_window():
    text = (
        "S\t1000\t65536\n"
        "K\tb\t7\t2026-11-24 00:00:00\t2026-11-24 00:30:00\tTimeoutError\n"
        "K\tw\t2\t2026-11-24 01:00:00\t2026-11-24 01:01:00\tTimeoutError\n"
        "K\tw\t40\t2026-11-24 01:02:00\t2026-11-24 01:04:00\tDatabaseError\n"
        "K\tu\t3\t\t\tConnection refused\n"
    )
    lines, size, types = parse_error_counts(text)
    assert (lines, size) == (1000, 65536)
    assert types == [
        ErrorType(
            "DatabaseError",
            40,
            0,
            0,
            dt.datetime(2026, 11, 24, 1, 2),
            dt.datetime(2026, 11, 24, 1, 4),
        ),
        ErrorType(
            "TimeoutError", 2, 7, 0, dt.datetime(2026, 11, 24, 1), dt.datetime(2026, 11, 24, 1, 1)
        ),
        ErrorType("Connection refused", 0, 0, 3, None, None),
    ]


def test_parse_error_counts_refuses_other_output():
    with pytest.raises(ValueError, match="not a line"):
        parse_error_counts("S\t1\t2\nawk: syntax error\n")


def test_error_counts_rates_and_spike_factor():
    now = dt.datetime(2026, 11, 24, 1, 0)
    counts = ErrorCounts(
        "/log",
        now,
        5.0,
        60.0,
        (ErrorType("A", 50, 12, 1, now, now), ErrorType("B", 0, 0, 0, None, None)),
        10,
        100,
        50,
    )
    assert (counts.window_total, counts.baseline_total, counts.unknown_time) == (50, 12, 1)
    assert counts.rate_per_minute == 10.0 and counts.baseline_rate_per_minute == 0.2
    assert counts.spike_factor == pytest.approx(50.0)
    assert counts.window_start == dt.datetime(2026, 11, 24, 0, 55)
    quiet = ErrorCounts("/log", now, 5.0, 60.0, (ErrorType("A", 1, 0, 0, now, now),), 1, 1, 1)
    assert quiet.spike_factor == math.inf


@pytest.fixture
def counter(tmp_path: Path) -> LogCounter:
    policy = make_policy(load_config(start=tmp_path), "read-only")
    return LogCounter(Host(LocalBackend(), policy=policy))


def stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def test_the_counter_counts_types_windows_and_lines_without_time(counter, tmp_path):
    now = dt.datetime.now()
    log = tmp_path / "app.log"
    lines = [f"{stamp(now - dt.timedelta(hours=3))} ERROR OldError: before the baseline"]
    lines += [f"{stamp(now - dt.timedelta(minutes=30))} ERROR TimeoutError: slow"] * 3
    lines += [f"{stamp(now - dt.timedelta(minutes=2))},123 ERROR DatabaseError: x"] * 5
    lines += [f"[{stamp(now - dt.timedelta(minutes=1))}] CRITICAL disk.full now"]
    lines += ["Traceback: raise ValueError('no time') ERROR", "  at x.y(Z.java) INFO"]
    log.write_text("\n".join(lines) + "\n")
    counts = counter.error_counts(str(log), since_minutes=5, baseline_minutes=60)
    by_key = {item.key: item for item in counts.types}
    assert [item.key for item in counts.types] == [
        "DatabaseError",
        "disk.full",
        "TimeoutError",
        "ValueError",
    ]
    assert (by_key["DatabaseError"].window, by_key["TimeoutError"].baseline) == (5, 3)
    assert by_key["ValueError"].unknown_time == 1
    assert counts.window_total == 6 and counts.baseline_total == 3 and counts.unknown_time == 1
    assert counts.lines_scanned == len(lines)
    assert counts.bytes_scanned == log.stat().st_size
    assert by_key["DatabaseError"].first == (now - dt.timedelta(minutes=2)).replace(microsecond=0)
    assert counts.output_bytes < 500


def test_the_counter_groups_by_the_matched_text(counter, tmp_path):
    now = stamp(dt.datetime.now())
    log = tmp_path / "app.log"
    log.write_text(
        f"{now} WARN connect to db:5432: Connection refused\n"
        f"{now} ERROR ECONNREFUSED 127.0.0.1:6379\n"
        f"{now} ERROR c:\\temp\\x.txt not found\n"
    )
    counts = counter.error_counts(
        str(log), since_minutes=1, pattern="Connection refused|ECONNREFUSED", by="match"
    )
    assert {t.key: t.window for t in counts.types} == {"Connection refused": 1, "ECONNREFUSED": 1}
    # A backslash in the pattern reaches awk intact.
    escaped = counter.error_counts(str(log), since_minutes=1, pattern=r"c:\\temp", by="match")
    assert [(t.key, t.window) for t in escaped.types] == [("c:\\temp", 1)]


def test_the_counter_raises_for_a_missing_file(counter, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.log"):
        counter.error_counts(str(tmp_path / "nope.log"), since_minutes=5)
    with pytest.raises(ValueError, match="by must be"):
        error_counts(counter.host, "x", since_minutes=5, by="level")  # type: ignore[arg-type]


class Recorder(LocalBackend):
    """Run commands locally and keep their argv."""

    def __init__(self) -> None:
        super().__init__()
        self.argvs: list[list[str]] = []

    def execute(self, command, timeout, on_cancel=None):
        self.argvs.append(command if isinstance(command, str) else list(command))
        return super().execute(command, timeout, on_cancel)


def test_the_commands_pass_the_read_only_guard(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("x 'a.b' $(x)\n")
    backend = Recorder()
    counts = error_counts(Host(backend), str(log), since_minutes=5, pattern=r"a\.b|'\$(x)")
    date, pipeline = backend.argvs
    assert date[0] == "date"
    assert pipeline.startswith(f"wc -lc -- {log} && grep -a -E -e ")
    assert " | awk -v " in pipeline
    check_command(shlex.join(date), date)
    check_command(pipeline, None)
    # The pattern reached grep and awk intact: the line with "a.b" was counted.
    assert (counts.lines_scanned, counts.unknown_time) == (1, 1)


# Journal units: journalctl -u UNIT --since ... -o short-iso | awk ...


def journal_works() -> bool:
    """Whether this machine has a journal that journalctl can read."""
    done = subprocess.run(
        ["journalctl", "-n", "1", "--no-pager"], capture_output=True, text=True, check=False
    )
    return done.returncode == 0 and "No journal files" not in done.stderr


def test_journal_command_quotes_the_unit_and_pipes_into_the_counter():
    awk = ["awk", "-v", "pat=ERROR", "--", "{ print }"]
    command = journal_command("app; rm -rf /", dt.datetime(2026, 11, 24, 1, 0), awk)
    assert command == (
        "journalctl -u 'app; rm -rf /' --since '2026-11-24 01:00:00' -o short-iso --no-pager"
        " | awk -v pat=ERROR -- '{ print }'"
    )
    check_command(command, None)


class JournalBackend:
    """Answers date and the journal pipeline with canned text; keeps the commands."""

    name = "canned"
    uri = "canned://"

    def __init__(self, counted: str, stderr: str = "") -> None:
        self.counted, self.stderr = counted, stderr
        self.commands: list[str | list[str]] = []

    def execute(self, command, timeout, on_cancel=None):
        self.commands.append(command)
        if command == ["date", "+%Y-%m-%d %H:%M:%S %z"]:
            return "2026-11-24 02:00:00 +0000\n", "", 0
        return self.counted, self.stderr, 0

    def close(self) -> None:
        pass


def test_journal_error_counts_reads_the_window_and_baseline_of_the_unit():
    backend = JournalBackend(
        "S\t120\t9000\nK\tw\t30\t2026-11-24 01:56:00\t2026-11-24 01:59:00\tDatabaseError\n"
        "K\tb\t2\t2026-11-24 01:10:00\t2026-11-24 01:20:00\tDatabaseError\n"
    )
    counter = LogCounter(Host(backend))
    counts = counter.journal_error_counts("app.service", since_minutes=5, baseline_minutes=60)
    assert counts.path == "journal of app.service"
    assert (counts.window_total, counts.baseline_total, counts.lines_scanned) == (30, 2, 120)
    assert counts.now == dt.datetime(2026, 11, 24, 2, 0)
    pipeline = backend.commands[1]
    assert pipeline.startswith("journalctl -u app.service --since '2026-11-24 00:55:00' ")
    assert "-v 'ws=2026-11-24 01:55:00' -v 'bs=2026-11-24 00:55:00'" in pipeline
    check_command(pipeline, None)
    # Once per question and run, like a file.
    counter.journal_error_counts("app.service", since_minutes=5, baseline_minutes=60)
    assert len(backend.commands) == 2


def test_journal_error_counts_says_why_the_journal_cannot_be_read():
    backend = JournalBackend("S\t1\t17\n", "No journal files were found.\n")
    with pytest.raises(
        RuntimeError, match="cannot read the journal of app on canned: No journal files were found"
    ):
        journal_error_counts(Host(backend), "app", since_minutes=5)
    with pytest.raises(ValueError, match="not a systemd unit name"):
        journal_error_counts(Host(backend), "--vacuum-size=1", since_minutes=5)


def test_the_counter_reads_journal_short_iso_lines(counter, tmp_path):
    """The real awk program on lines as ``journalctl -o short-iso`` prints them."""
    now = dt.datetime.now()
    iso = (now - dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S+0000")
    old = (now - dt.timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M:%S+0000")
    log = tmp_path / "journal.txt"
    log.write_text(
        f"{iso} web1 app[4242]: ERROR DatabaseError: gone\n" * 4
        + f"{old} web1 app[4242]: ERROR TimeoutError: slow\n"
        + f"{iso} web1 app[4242]: INFO fine\n"
    )
    counts = counter.error_counts(str(log), since_minutes=5, baseline_minutes=60)
    assert {t.key: (t.window, t.baseline) for t in counts.types} == {
        "DatabaseError": (4, 0),
        "TimeoutError": (0, 1),
    }


def test_the_journal_counter_on_this_machine(counter):
    if journal_works():
        pytest.skip("this machine has a journal: the no-journal error cannot be shown here")
    with pytest.raises(RuntimeError, match="No journal files were found"):
        counter.journal_error_counts("runbook-test.service", since_minutes=5)


def test_a_real_unit_error_spike_is_counted_from_the_journal(counter):
    if not (journal_works() and Path("/run/systemd/system").is_dir()):
        pytest.skip("no running systemd and journald here: systemd-run cannot log to a unit")
    unit = f"runbook-test-{os.getpid()}.service"
    subprocess.run(
        [
            "systemd-run",
            f"--unit={unit}",
            "--wait",
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6; do echo 'ERROR DatabaseError: gone'; done",
        ],
        check=True,
        capture_output=True,
    )
    deadline = time.monotonic() + 10
    while True:
        counts = journal_error_counts(counter.host, unit, since_minutes=5)
        if counts.window_total >= 6 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [(t.key, t.window) for t in counts.types] == [("DatabaseError", 6)]
