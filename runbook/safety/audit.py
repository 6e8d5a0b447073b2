"""An append-only, tamper-evident audit log of commands and actions, one JSON record a line.

Each line is a JSON object in canonical form (sorted keys, no spaces, UTF-8) whose
``prev`` field is the hex SHA-256 of the exact bytes of the line before it (newline
included), or 64 zeros on the first line. Changing, removing, inserting or reordering
lines therefore breaks the chain at a line that :func:`verify` can name.

A hash chain has no anchor of its own: removing whole records from the *end* of the
log, or rewriting the last record in canonical form, goes unnoticed unless the caller
keeps the record count or the last line's hash somewhere else.

Several processes and threads may append at once: every append takes an exclusive
``flock`` on the file, so lines never interleave and the chain stays valid. ``flock``
is advisory and may not work on network file systems; keep the log on a local disk.

Records are written as given: redacting secrets (see :mod:`runbook.safety.redact`) is the
caller's job. The log is never rotated or rewritten.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import stat
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any
from typing import BinaryIO

from runbook.markers import hookimpl
from runbook.outcomes import UsageError
from runbook.timestamps import isotime

if TYPE_CHECKING:
    from runbook.config import Config
    from runbook.model import ActionItem
    from runbook.records import RunStart
    from runbook.results import ActionResult
    from runbook.results import HostResult
    from runbook.results import RunResult
    from runbook.steps import CommandRecord

#: The ``prev`` of the first record: there is no line before it.
GENESIS = "0" * 64
#: How much of the file's tail to read at a time when looking for the last line.
_CHUNK = 4096

# flock already excludes other threads (each append opens its own file description);
# the lock keeps this process's threads from queueing in the kernel on the same file.
_lock = threading.Lock()


def _new_lock_in_child() -> None:
    """Give a forked child a fresh lock: another thread may have held it at the fork."""
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_in_child)


class AuditLogError(Exception):
    """The log cannot be appended to safely (its last line is incomplete)."""


def default_audit_path() -> Path:
    """Return where the audit log lives.

    ``$RUNBOOK_AUDIT_LOG`` if set, else ``$XDG_STATE_HOME/runbook/audit.jsonl``, else
    ``~/.local/state/runbook/audit.jsonl``. Empty variables count as unset.
    """
    explicit = os.environ.get("RUNBOOK_AUDIT_LOG")
    if explicit:
        return Path(explicit).expanduser()
    state_home = os.environ.get("XDG_STATE_HOME")
    base = Path(state_home) if state_home else Path.home() / ".local" / "state"
    return base / "runbook" / "audit.jsonl"


def encode(record: Mapping[str, Any]) -> bytes:
    """Return the canonical line for ``record``, newline included."""
    text = json.dumps(
        record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return (text + "\n").encode("utf-8")


def line_hash(line: bytes) -> str:
    """Return the hex SHA-256 the next record carries as ``prev``."""
    return hashlib.sha256(line).hexdigest()


class AuditLog:
    """Append records to one audit log file, chaining each to the line before it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # The last line this process wrote, and where the file ended after it: when the
        # file still ends there, the next ``prev`` needs no read.
        self._tail: tuple[int, int, str] | None = None  # (inode, size, hash)

    def append(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Write ``record`` as one line and return it as written.

        Adds ``time`` (UTC, ISO 8601 with milliseconds) unless the record has one, and
        ``prev``, which is reserved. The record must be JSON-serializable without NaN
        or infinities, and must already be free of secrets.
        """
        if "prev" in record:
            raise ValueError('"prev" is set by the audit log, not by the caller')
        written = dict(record)
        encode(written)  # fail on an unserializable record before taking any lock
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with _lock:
            descriptor = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                _keep_private(descriptor)
                fcntl.flock(descriptor, fcntl.LOCK_EX)
                status = os.fstat(descriptor)
                written.setdefault("time", isotime(precise=True))
                written["prev"] = self._previous_hash(descriptor, status)
                line = encode(written)
                count = os.write(descriptor, line)
                if count != len(line):
                    raise OSError(f"{self.path}: wrote {count} of {len(line)} bytes")
                self._tail = (status.st_ino, status.st_size + count, line_hash(line))
            finally:
                os.close(descriptor)  # also releases the flock
        return written

    def _previous_hash(self, descriptor: int, status: os.stat_result) -> str:
        tail = self._tail
        if tail is not None and tail[:2] == (status.st_ino, status.st_size):
            return tail[2]  # nobody wrote since our last line
        return _last_line_hash(descriptor, self.path)


@dataclasses.dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of checking an audit log's hash chain."""

    #: True when every line is a well-formed record chained to the line before it.
    ok: bool
    #: Records that checked out before the first problem (all of them when ok).
    records: int
    #: What is wrong, starting with the line number; None when ok.
    problem: str | None
    #: The 1-based line of the first problem; None when ok or not about a line.
    line: int | None


def verify(path: Path) -> Verification:
    """Check every line of the log at ``path`` and report the first bad one.

    Reads only what was written when verification started, so appends that happen
    meanwhile neither block it nor show up as a truncated last line. An empty file
    is a valid log with no records; a missing file is not.
    """
    try:
        stream = path.open("rb")
    except FileNotFoundError:
        return Verification(False, 0, f"{path} does not exist", None)
    with stream:
        fcntl.flock(stream.fileno(), fcntl.LOCK_SH)  # wait for an append in progress
        size = os.fstat(stream.fileno()).st_size
        fcntl.flock(stream.fileno(), fcntl.LOCK_UN)
        return _verify_lines(stream, size)


def _verify_lines(stream: BinaryIO, size: int) -> Verification:
    """Check the first ``size`` bytes of ``stream`` line by line."""
    expected = GENESIS
    number = 0
    position = 0
    while position < size:
        line = stream.readline(size - position)
        position += len(line)
        number += 1
        problem = _line_problem(line, number, expected)
        if problem is not None:
            return Verification(False, number - 1, f"line {number}: {problem}", number)
        expected = line_hash(line)
    return Verification(True, number, None, None)


def _line_problem(line: bytes, number: int, expected: str) -> str | None:
    """Return what is wrong with one line, given the hash of the line before it."""
    if not line.endswith(b"\n"):
        return "incomplete line at the end of the log (truncated)"
    try:
        record = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return f"not a valid JSON record ({error})"
    if not isinstance(record, dict):
        return "not a JSON object"
    if encode(record) != line:
        return "not in canonical form (edited by hand?)"
    prev = record.get("prev")
    if not isinstance(prev, str):
        return 'no "prev" hash'
    if prev != expected:
        if number == 1:
            return "hash chain broken (records removed from the start of the log)"
        return "hash chain broken (record changed or removed before it)"
    return None


def _keep_private(descriptor: int) -> None:
    """Make the log 0600 if this user owns it (a shared log keeps its owner's mode).

    A log that is not a regular file (``/dev/null``) keeps the system's mode.
    """
    status = os.fstat(descriptor)
    regular = stat.S_ISREG(status.st_mode)
    if regular and status.st_uid == os.geteuid() and status.st_mode & 0o777 != 0o600:
        os.fchmod(descriptor, 0o600)


def _last_line_hash(descriptor: int, path: Path) -> str:
    """Return the hash of the file's last line, reading backwards from the end."""
    offset = os.fstat(descriptor).st_size
    if offset == 0:
        return GENESIS
    tail = b""
    while offset > 0:
        start = max(0, offset - _CHUNK)
        tail = os.pread(descriptor, offset - start, start) + tail
        offset = start
        if not tail.endswith(b"\n"):
            # Appending would glue the new record onto the broken one.
            raise AuditLogError(
                f"{path}: the last line is incomplete (an interrupted write or tampering);"
                " run verify and repair the log before appending"
            )
        newline = tail.rfind(b"\n", 0, len(tail) - 1)
        if newline >= 0:
            return line_hash(tail[newline + 1 :])
    return line_hash(tail)


class AuditPlugin:
    """Append a record for every command and action of a run (an essential plugin)."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log
        self._context: dict[str, Any] = {}

    def _append(self, event: str, **fields: Any) -> None:
        self.log.append({"event": event, **self._context, **fields})

    @hookimpl
    def runbook_run_started(self, run: RunStart) -> None:
        """Open the run's records; an unwritable log stops the run before it starts."""
        self._context = {
            "operator": run.info.operator,
            "runbook": run.runbook.name,
            "mode": "replay" if run.info.replay else run.mode,
            "incident": run.info.incident,
        }
        if run.info.replay:  # no target was contacted: commands were answered from it
            self._context["cassette"] = run.info.replay
        try:
            self._append("run_started", hosts=run.hosts)
        except (OSError, AuditLogError) as exc:
            raise UsageError(
                f"cannot write the audit log {self.log.path}: {exc} (set audit_log in "
                "runbook.toml or RUNBOOK_AUDIT_LOG)"
            ) from None

    @hookimpl
    def runbook_command_finished(self, record: CommandRecord) -> None:
        """One record per command, refused ones included."""
        self._append(
            "command",
            host=record.host,
            step=record.step,
            command=record.command,
            exit_status=record.exit_status,
            duration_s=round(record.duration_s, 4),
            blocked=record.blocked,
            reason=record.reason or None,
        )

    @hookimpl
    def runbook_action_started(self, action: ActionItem, host: str) -> None:
        """The intent record, written before an action changes anything."""
        self._append("action_intent", action=action.id, host=host)

    @hookimpl
    def runbook_action_finished(self, result: ActionResult) -> None:
        """The result record of every action, planned and declined ones too."""
        self._append(
            "action",
            action=result.action,
            host=result.host,
            status=result.status,
            message=result.message,
            duration_s=round(result.duration_s, 4),
            verification=result.verification,
        )

    @hookimpl
    def runbook_host_finished(self, result: HostResult) -> None:
        """One record per target: reached or not, and why."""
        self._append(
            "host", host=result.name, uri=result.uri, status=result.status, error=result.error
        )

    @hookimpl
    def runbook_run_finished(self, result: RunResult) -> None:
        """Close the run's records with its exit status."""
        self._append("run_finished", exit_code=result.exit_code, interrupted=result.interrupted)


@hookimpl
def runbook_configure(config: Config) -> None:
    """Register the audit log at ``audit_log`` from the configuration, or the default path."""
    configured = config.get("audit_log")
    path = config.path(configured) if configured else default_audit_path()
    config.pluginmanager.register(AuditPlugin(AuditLog(path)), "audit-log")
