"""The ``logs`` fixture: error counts of a log file or journal unit, computed on the target.

A log can be gigabytes; the client never copies it. One ``awk`` program runs on
the target through ``Host.run``, reads what ``grep -E`` lets through of the file
(or what ``journalctl -u UNIT --since ... -o short-iso`` pipes into it) and prints a few lines of
aggregated counts: per error type, how many fell in the window and in the
baseline before it, and when the first and last came. The target's clock (one
``date`` call) sets the windows, so a skewed client clock does not matter.

Timestamps are read at the start of a line (after an optional ``[``), as
``YYYY-MM-DD HH:MM:SS`` or ISO 8601 with a ``T``, and compared as written with
the target's local time. A matching line without one counts as "unknown time".
The awk program uses no ``system()``, pipes or redirection, so the read-only
guard passes it; what it prints is parsed by pure ``parse_*`` functions.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import shlex
from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Literal

from runbook import fixture

if TYPE_CHECKING:
    from runbook import CommandResult
    from runbook import Host

#: The default pattern of an error line (an extended regular expression, as awk reads it).
ERROR_PATTERN = r"ERROR|CRITICAL|FATAL|Exception"
#: Distinct keys counted on the target; the rest are counted as ``(other)``.
MAX_KEYS = 200

#: How lines are grouped: by error ``type`` (the exception class, else the word after
#: the match), by the ``match``ed text itself, or by the ``peer`` the line names (the
#: first ``host:port``, ``[v6]:port`` or libpq's ``"host" (addr), port N`` after the
#: timestamp; the matched text when it names none).
GroupBy = Literal["type", "match", "peer"]

_TIMESTAMP = "%Y-%m-%d %H:%M:%S"
_DATE_COMMAND = ["date", "+%Y-%m-%d %H:%M:%S %z"]
# The read-only guard refuses a newline in an argument, so the program is one line.
# One pass: S = lines and bytes read; K = period, count, first, last, key (tab-separated).
# Periods: w window, b baseline, u no parsable timestamp.
_AWK_PROGRAM = " ".join(
    line.strip()
    for line in r"""
BEGIN { OFS = "\t"; nkeys = 0 }
{ nlines++; nbytes += length($0) + 1 }
$0 !~ pat { next }
{
    t = substr($0, 1, 19);
    if (substr($0, 1, 1) == "[") t = substr($0, 2, 19);
    if (t ~ /^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9][ T][0-9][0-9]:[0-9][0-9]:[0-9][0-9]$/) {
        t = substr(t, 1, 10) " " substr(t, 12, 8);
        if (t >= ws) p = "w"; else if (t >= bs) p = "b"; else next
    } else { p = "u"; t = "" }
    match($0, pat); at = RSTART; len = RLENGTH;
    k = substr($0, at, len);
    if (by == "type") {
        if (match($0, /[A-Za-z_][A-Za-z0-9_.]*(Error|Exception)/)) {
            k = substr($0, RSTART, RLENGTH)
        } else {
            rest = substr($0, at + len);
            sub(/^[^A-Za-z0-9_]+/, "", rest);
            if (match(rest, /^[A-Za-z0-9_.]+/)) k = substr(rest, RSTART, RLENGTH)
        }
    }
    if (by == "peer") {
        rest = $0;
        if (t != "") rest = substr($0, 20 + (substr($0, 1, 1) == "["));
        if (match(rest, /\[[0-9A-Fa-f:.]+\]:[0-9]+/)) {
            k = substr(rest, RSTART, RLENGTH)
        } else if (match(rest, /"[^"]+"( \([^)]*\))?, port [0-9]+/)) {
            c = substr(rest, RSTART + 1, RLENGTH - 1);
            h = substr(c, 1, index(c, "\"") - 1);
            sub(/.* /, "", c);
            k = h ":" c
        } else {
            while (match(rest, /[A-Za-z0-9_][A-Za-z0-9_.-]*:[0-9]+/)) {
                c = substr(rest, RSTART, RLENGTH);
                rest = substr(rest, RSTART + RLENGTH);
                h = c;
                sub(/:[0-9]+$/, "", h);
                if (h ~ /[A-Za-z.]/) { k = c; break }
            }
        }
    }
    gsub(/[\t\r]/, " ", k);
    if (!(k in known)) { if (nkeys >= maxk) k = "(other)"; else { known[k] = 1; nkeys++ } }
    id = p SUBSEP k;
    if (!(id in count)) { keys[++n] = id; first[id] = t; last[id] = t }
    count[id]++;
    if (t != "" && t < first[id]) first[id] = t;
    if (t > last[id]) last[id] = t
}
END {
    print "S", nlines + 0, nbytes + 0;
    for (i = 1; i <= n; i++) {
        split(keys[i], part, SUBSEP);
        print "K", part[1], count[keys[i]], first[keys[i]], last[keys[i]], part[2]
    }
}
""".splitlines()
).strip()


@dataclasses.dataclass(frozen=True, slots=True)
class ErrorType:
    """The counts of one error type: in the window, the baseline, and without a time."""

    key: str
    window: int
    baseline: int
    unknown_time: int
    #: The first and last occurrence in the window (None when there is none there).
    first: dt.datetime | None
    last: dt.datetime | None


@dataclasses.dataclass(frozen=True, slots=True)
class ErrorCounts:
    """What ``error_counts`` found: counts by type, the windows, and what was read."""

    path: str
    #: The target's local time when the count ran (naive, as the log's timestamps).
    now: dt.datetime
    since_minutes: float
    baseline_minutes: float
    #: Most errors in the window first.
    types: tuple[ErrorType, ...]
    lines_scanned: int
    bytes_scanned: int
    #: Bytes of output the target sent back: the counts, never the log.
    output_bytes: int

    @property
    def window_start(self) -> dt.datetime:
        """When the window starts (the baseline ends)."""
        return self.now - dt.timedelta(minutes=self.since_minutes)

    @property
    def window_total(self) -> int:
        """Errors in the window."""
        return sum(item.window for item in self.types)

    @property
    def baseline_total(self) -> int:
        """Errors in the baseline window before it."""
        return sum(item.baseline for item in self.types)

    @property
    def unknown_time(self) -> int:
        """Matching lines without a parsable timestamp (in no window)."""
        return sum(item.unknown_time for item in self.types)

    @property
    def rate_per_minute(self) -> float:
        """Errors per minute in the window."""
        return self.window_total / self.since_minutes if self.since_minutes else 0.0

    @property
    def baseline_rate_per_minute(self) -> float:
        """Errors per minute in the baseline."""
        return self.baseline_total / self.baseline_minutes if self.baseline_minutes else 0.0

    @property
    def spike_factor(self) -> float:
        """The window's rate over the baseline's (inf when the baseline had none)."""
        if self.baseline_rate_per_minute:
            return self.rate_per_minute / self.baseline_rate_per_minute
        return math.inf if self.window_total else 0.0

    @property
    def first(self) -> dt.datetime | None:
        """The first error in the window."""
        return min((t.first for t in self.types if t.first is not None), default=None)

    @property
    def last(self) -> dt.datetime | None:
        """The last error in the window."""
        return max((t.last for t in self.types if t.last is not None), default=None)


# Parsers: pure functions of command output.


def parse_log_timestamp(text: str) -> dt.datetime:
    """Parse ``YYYY-MM-DD HH:MM:SS`` (or with ``T``) at the start of ``text``; naive."""
    stamp = text.lstrip("[")[:19].replace("T", " ")
    try:
        return dt.datetime.strptime(stamp, _TIMESTAMP)
    except ValueError:
        raise ValueError(f"no timestamp at the start of {text[:40]!r}") from None


def parse_date(text: str) -> dt.datetime:
    """Parse ``date '+%Y-%m-%d %H:%M:%S %z'`` output into an aware datetime."""
    try:
        return dt.datetime.strptime(text.strip(), f"{_TIMESTAMP} %z")
    except ValueError:
        raise ValueError(f"not a date +'%Y-%m-%d %H:%M:%S %z' output: {text.strip()!r}") from None


def parse_error_counts(text: str) -> tuple[int, int, list[ErrorType]]:
    """Parse the awk program's output: lines and bytes read, and the error types.

    Types come most errors in the window first, then most in the baseline.
    """
    lines = bytes_read = 0
    found: dict[str, dict[str, tuple[int, str, str]]] = {}
    for line in text.splitlines():
        fields = line.split("\t")
        if fields[0] == "S" and len(fields) == 3:
            lines, bytes_read = int(fields[1]), int(float(fields[2]))
        elif fields[0] == "K" and len(fields) == 6:
            _, period, count, first, last, key = fields
            found.setdefault(key, {})[period] = (int(count), first, last)
        elif line.strip():
            raise ValueError(f"not a line of the error counter's output: {line!r}")
    types = []
    for key, periods in found.items():
        window = periods.get("w", (0, "", ""))
        types.append(
            ErrorType(
                key=key,
                window=window[0],
                baseline=periods.get("b", (0, "", ""))[0],
                unknown_time=periods.get("u", (0, "", ""))[0],
                first=parse_log_timestamp(window[1]) if window[1] else None,
                last=parse_log_timestamp(window[2]) if window[2] else None,
            )
        )
    types.sort(key=lambda t: (-t.window, -t.baseline, -t.unknown_time, t.key))
    return lines, bytes_read, types


# The counter: two commands on the host.


def target_now(host: Host) -> dt.datetime:
    """Return the target's local time, naive (as log timestamps are written)."""
    result = host.run(_DATE_COMMAND)
    return parse_date(result.check_output(host.name)).replace(tzinfo=None)


def _check_window(since_minutes: float, baseline_minutes: float, by: str) -> None:
    if since_minutes <= 0 or baseline_minutes < 0:
        raise ValueError("since_minutes must be positive and baseline_minutes not negative")
    if by not in ("type", "match", "peer"):
        raise ValueError(f"by must be 'type', 'match' or 'peer', not {by!r}")


def _awk_argv(
    now: dt.datetime, since_minutes: float, baseline_minutes: float, pattern: str, by: GroupBy
) -> list[str]:
    """Return ``awk -v ... -- PROGRAM``: the counter, for a window ending ``now``."""
    window_start = now - dt.timedelta(minutes=since_minutes)
    baseline_start = window_start - dt.timedelta(minutes=baseline_minutes)
    # awk reads -v values as string literals: a backslash must be doubled to survive.
    variables = {
        "ws": window_start.strftime(_TIMESTAMP),
        "bs": baseline_start.strftime(_TIMESTAMP),
        "pat": pattern.replace("\\", "\\\\"),
        "by": by,
        "maxk": str(MAX_KEYS),
    }
    argv = ["awk"]
    for name, value in variables.items():
        argv += ["-v", f"{name}={value}"]
    return [*argv, "--", _AWK_PROGRAM]


def _error_counts(
    result: CommandResult,
    source: str,
    now: dt.datetime,
    since: float,
    baseline: float,
    counted: str | None = None,
    scanned: tuple[int, int] | None = None,
) -> ErrorCounts:
    """Build the counts from the counter's output (``counted``, else all of stdout).

    ``scanned`` (lines, bytes) replaces what awk read when something else read
    the whole log (``wc`` in front of ``grep``).
    """
    lines, bytes_read, types = parse_error_counts(result.stdout if counted is None else counted)
    if scanned is not None:
        lines, bytes_read = scanned
    return ErrorCounts(
        path=source,
        now=now,
        since_minutes=since,
        baseline_minutes=baseline,
        types=tuple(types),
        lines_scanned=lines,
        bytes_scanned=bytes_read,
        output_bytes=len(result.stdout.encode()) + len(result.stderr.encode()),
    )


def error_counts(
    host: Host,
    path: str,
    *,
    since_minutes: float,
    baseline_minutes: float = 60.0,
    pattern: str = ERROR_PATTERN,
    by: GroupBy = "type",
) -> ErrorCounts:
    """Count the lines of ``path`` matching ``pattern`` by type, on the target.

    The window is the last ``since_minutes``; the baseline the ``baseline_minutes``
    before it. Older lines are not counted. Raise ``FileNotFoundError`` when the
    file is missing and ``PermissionError`` when it cannot be read.
    """
    _check_window(since_minutes, baseline_minutes, by)
    now = target_now(host)
    awk = _awk_argv(now, since_minutes, baseline_minutes, pattern, by)
    result = host.run(file_command(path, pattern, awk))
    if not result.succeeded:
        message = result.describe_failure(host.name)
        if "No such file" in result.stderr or "cannot open" in result.stderr:
            if "ermission denied" in result.stderr:
                raise PermissionError(message)
            raise FileNotFoundError(message)
        raise RuntimeError(message)
    read, _, counted = result.stdout.partition("\n")
    lines, size = (int(field) for field in read.split()[:2])  # wc -lc: what grep read
    return _error_counts(result, path, now, since_minutes, baseline_minutes, counted, (lines, size))


def file_command(path: str, pattern: str, awk_argv: list[str]) -> str:
    """Return ``wc -lc FILE && grep -E PATTERN FILE | awk ...`` as one shell command.

    grep's matcher passes awk only the lines that can match (awk matches them
    again, so the counts are awk's), which makes a large log several times
    faster to count; ``wc`` says how much there was and fails first on a missing
    or unreadable file. Every word is shell-quoted here.
    """
    wc = ["wc", "-lc", "--", path]
    grep = ["grep", "-a", "-E", "-e", pattern, "--", path]
    return f"{shlex.join(wc)} && {shlex.join(grep)} | {shlex.join(awk_argv)}"


def journal_command(unit: str, since: dt.datetime, awk_argv: list[str]) -> str:
    """Return ``journalctl -u UNIT --since ... -o short-iso | awk ...`` as one shell command.

    ``short-iso`` starts each line with the entry's local time (``2026-11-24T03:00:01+0000``),
    which the counter reads like a log file's timestamp. Every word is shell-quoted here.
    """
    journal = ["journalctl", "-u", unit, "--since", since.strftime(_TIMESTAMP)]
    journal += ["-o", "short-iso", "--no-pager"]
    return f"{shlex.join(journal)} | {shlex.join(awk_argv)}"


def journal_error_counts(
    host: Host,
    unit: str,
    *,
    since_minutes: float,
    baseline_minutes: float = 60.0,
    pattern: str = ERROR_PATTERN,
    by: GroupBy = "type",
) -> ErrorCounts:
    """Count the journal entries of systemd ``unit`` matching ``pattern`` by type, on the target.

    ``journalctl`` reads only the window and its baseline (``--since``) and pipes
    them into the same awk counter as ``error_counts``: the journal is never copied.
    Raise ``RuntimeError`` when the target has no journal or journalctl fails.
    """
    _check_window(since_minutes, baseline_minutes, by)
    if not unit or unit.startswith("-"):
        raise ValueError(f"not a systemd unit name: {unit!r}")
    now = target_now(host)
    since = now - dt.timedelta(minutes=since_minutes + baseline_minutes)
    awk = _awk_argv(now, since_minutes, baseline_minutes, pattern, by)
    result = host.run(journal_command(unit, since, awk))
    # journalctl exits 0 with "-- No entries --" when it has no journal: stderr says why.
    problems = [line for line in result.stderr.splitlines() if line.strip()]
    if not result.succeeded or problems:
        reason = problems[-1] if problems else f"exit status {result.exit_status}"
        raise RuntimeError(f"cannot read the journal of {unit} on {host.name}: {reason}")
    return _error_counts(result, f"journal of {unit}", now, since_minutes, baseline_minutes)


class LogCounter:
    """The log helpers bound to one host: what the ``logs`` fixture gives a check."""

    def __init__(self, host: Host) -> None:
        self.host = host
        # One scan per question and run: several checks ask the same one of a large log.
        self._scans: dict[tuple[str, str, float, float, str, str], ErrorCounts] = {}

    def __repr__(self) -> str:
        return f"<LogCounter on {self.host.name}>"

    def now(self) -> dt.datetime:
        """Return the target's local time, naive."""
        return target_now(self.host)

    def error_counts(
        self,
        path: str,
        *,
        since_minutes: float,
        baseline_minutes: float = 60.0,
        pattern: str = ERROR_PATTERN,
        by: GroupBy = "type",
    ) -> ErrorCounts:
        """Count errors in ``path`` by type in a window and its baseline (``error_counts``).

        The log is read once per set of arguments in a run: a later check asking the
        same gets the same counts, and its commands list shows no second scan.
        """
        return self._once(error_counts, path, since_minutes, baseline_minutes, pattern, by)

    def journal_error_counts(
        self,
        unit: str,
        *,
        since_minutes: float,
        baseline_minutes: float = 60.0,
        pattern: str = ERROR_PATTERN,
        by: GroupBy = "type",
    ) -> ErrorCounts:
        """Count errors in the journal of ``unit`` (``journal_error_counts``), once per run."""
        return self._once(journal_error_counts, unit, since_minutes, baseline_minutes, pattern, by)

    def _once(
        self,
        count: Callable[..., ErrorCounts],
        source: str,
        since_minutes: float,
        baseline_minutes: float,
        pattern: str,
        by: GroupBy,
    ) -> ErrorCounts:
        """Run ``count`` on ``source`` once per set of arguments in a run."""
        key = (count.__name__, source, since_minutes, baseline_minutes, pattern, by)
        if key not in self._scans:
            self._scans[key] = count(
                self.host,
                source,
                since_minutes=since_minutes,
                baseline_minutes=baseline_minutes,
                pattern=pattern,
                by=by,
            )
        return self._scans[key]


@fixture(scope="host")
def logs(host: Host) -> LogCounter:
    """Error counts of log files, computed on the current target (awk, never a copy)."""
    return LogCounter(host)
