"""The ``logs`` plugin: its parsers as tables, and the awk counter on real files.

The counter runs its awk program through a ``Host`` on this machine; the exact
command line it sends is checked against the read-only guard.
"""

from __future__ import annotations

import datetime as dt
import math
import shlex
from pathlib import Path

import pytest
from runbook.plugins.logs import ErrorCounts
from runbook.plugins.logs import ErrorType
from runbook.plugins.logs import LogCounter
from runbook.plugins.logs import error_counts
from runbook.plugins.logs import parse_date
from runbook.plugins.logs import parse_error_counts
from runbook.plugins.logs import parse_log_timestamp

from runbook.config import load_config
from runbook.guard import check_command
from runbook.guard import make_policy
from runbook.hosts import Host
from runbook.local import LocalBackend


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
        self.argvs.append(list(command))
        return super().execute(command, timeout, on_cancel)


def test_the_commands_pass_the_read_only_guard(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("")
    backend = Recorder()
    error_counts(Host(backend), str(log), since_minutes=5, pattern=r"a\.b|'\$(x)")
    assert [argv[0] for argv in backend.argvs] == ["date", "awk"]
    for argv in backend.argvs:
        check_command(shlex.join(argv), argv)
