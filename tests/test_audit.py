"""The audit log: record format, hash chain, tamper detection, permissions, concurrency."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import re
import stat
import threading
from collections.abc import Callable
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest

from runbook.safety.audit import GENESIS
from runbook.safety.audit import AuditLog
from runbook.safety.audit import AuditLogError
from runbook.safety.audit import Verification
from runbook.safety.audit import default_audit_path
from runbook.safety.audit import verify

Lines = list[bytes]


def write_log(path: Path, count: int = 6) -> Lines:
    """Append ``count`` records and return the file's lines."""
    log = AuditLog(path)
    for number in range(1, count + 1):
        log.append({"n": number, "command": f"systemctl status app{number}", "host": "web1"})
    return path.read_bytes().splitlines(keepends=True)


def test_append_writes_one_canonical_line_per_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)

    first = log.append({"runbook": "high_cpu", "operator": "ana", "exit_status": 0})
    second = log.append({"runbook": "high_cpu", "note": "café ✓", "time": "given"})

    lines = path.read_bytes().splitlines(keepends=True)
    assert [json.loads(line) for line in lines] == [first, second]
    assert lines[0] == (
        json.dumps(first, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
    ).encode("utf-8")
    assert "café ✓".encode() in lines[1]  # not \u-escaped
    assert first["prev"] == GENESIS
    assert second["prev"] == hashlib.sha256(lines[0]).hexdigest()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert second["time"] == "given"
    assert verify(path) == Verification(ok=True, records=2, problem=None, line=None)


def test_the_chain_finds_the_last_line_beyond_one_read_chunk(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log.append({"output": "x" * 10_000})
    log.append({"output": "y" * 5_000})
    log.append({"output": "z"})

    assert verify(path).ok
    assert verify(path).records == 3


def test_append_refuses_a_caller_prev_and_non_json_values(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)

    with pytest.raises(ValueError, match="prev"):
        log.append({"prev": GENESIS})
    with pytest.raises(ValueError):
        log.append({"duration_s": float("nan")})
    with pytest.raises(TypeError):
        log.append({"host": object()})
    assert not path.exists()


def test_empty_log_is_valid_and_missing_log_is_not(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.touch()

    assert verify(empty) == Verification(ok=True, records=0, problem=None, line=None)
    missing = verify(tmp_path / "missing.jsonl")
    assert not missing.ok
    assert missing.records == 0
    assert missing.line is None
    assert missing.problem is not None and "does not exist" in missing.problem


def _edit_field(lines: Lines) -> Lines:
    lines[2] = lines[2].replace(b'"n":3', b'"n":33')
    return lines


def _edit_prev(lines: Lines) -> Lines:
    lines[3] = re.sub(rb'"prev":"[0-9a-f]{64}"', b'"prev":"' + b"a" * 64 + b'"', lines[3])
    return lines


def _delete(index: int) -> Callable[[Lines], Lines]:
    def delete(lines: Lines) -> Lines:
        del lines[index]
        return lines

    return delete


def _insert_forged(lines: Lines) -> Lines:
    # A forger who knows the scheme chains the new line to line 2 correctly; the
    # original line 3, now line 4, still points at line 2.
    forged = {"n": 99, "prev": hashlib.sha256(lines[1]).hexdigest(), "time": "x"}
    line = json.dumps(forged, sort_keys=True, separators=(",", ":")) + "\n"
    lines.insert(2, line.encode())
    return lines


def _insert_copy(lines: Lines) -> Lines:
    lines.insert(2, lines[4])
    return lines


def _swap(lines: Lines) -> Lines:
    lines[2], lines[3] = lines[3], lines[2]
    return lines


def _swap_first(lines: Lines) -> Lines:
    lines[0], lines[1] = lines[1], lines[0]
    return lines


def _truncate_last(lines: Lines) -> Lines:
    lines[-1] = lines[-1][:-7]
    return lines


def _drop_final_newline(lines: Lines) -> Lines:
    lines[-1] = lines[-1][:-1]
    return lines


def _break_json(lines: Lines) -> Lines:
    lines[1] = lines[1][:10] + b"\n"
    return lines


def _blank_line(lines: Lines) -> Lines:
    lines.insert(4, b"\n")
    return lines


def _not_an_object(lines: Lines) -> Lines:
    lines.insert(1, b"[1,2]\n")
    return lines


def _reformat_last(lines: Lines) -> Lines:
    lines[-1] = json.dumps(json.loads(lines[-1]), indent=None).encode() + b"\n"
    return lines


def _invalid_utf8(lines: Lines) -> Lines:
    lines[2] = lines[2].replace(b"app3", b"app\xff")
    return lines


@pytest.mark.parametrize(
    ("tamper", "line", "problem"),
    [
        (_edit_field, 4, "hash chain broken (record changed or removed before it)"),
        (_edit_prev, 4, "hash chain broken"),
        (_delete(2), 3, "hash chain broken (record changed or removed before it)"),
        (_delete(0), 1, "removed from the start"),
        (_insert_forged, 4, "hash chain broken"),
        (_insert_copy, 3, "hash chain broken"),
        (_swap, 3, "hash chain broken"),
        (_swap_first, 1, "removed from the start"),
        (_truncate_last, 6, "incomplete line"),
        (_drop_final_newline, 6, "incomplete line"),
        (_break_json, 2, "not a valid JSON record"),
        (_blank_line, 5, "not a valid JSON record"),
        (_not_an_object, 2, "not a JSON object"),
        (_reformat_last, 6, "not in canonical form"),
        (_invalid_utf8, 3, "not a valid JSON record"),
    ],
)
def test_verify_names_the_first_tampered_line(
    tmp_path: Path, tamper: Callable[[Lines], Lines], line: int, problem: str
) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"".join(tamper(write_log(path))))

    result = verify(path)

    assert not result.ok
    assert result.line == line
    assert result.records == line - 1
    assert result.problem is not None
    assert result.problem.startswith(f"line {line}: ")
    assert problem in result.problem


def test_a_bare_chain_cannot_see_records_cut_from_the_end(tmp_path: Path) -> None:
    # The documented limit: callers who need it must keep the count or last hash elsewhere.
    path = tmp_path / "audit.jsonl"
    lines = write_log(path)
    path.write_bytes(b"".join(lines[:-2]))

    assert verify(path) == Verification(ok=True, records=4, problem=None, line=None)


def test_append_refuses_to_extend_an_incomplete_last_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lines = write_log(path, 2)
    path.write_bytes(lines[0] + lines[1][:-5])

    with pytest.raises(AuditLogError, match="last line is incomplete"):
        AuditLog(path).append({"n": 3})
    assert path.read_bytes() == lines[0] + lines[1][:-5]


def test_log_is_private_and_its_new_folder_too(tmp_path: Path) -> None:
    path = tmp_path / "state" / "runbook" / "audit.jsonl"

    AuditLog(path).append({"n": 1})

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_an_existing_log_with_wider_permissions_becomes_private(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.touch(mode=0o644)
    path.chmod(0o644)

    AuditLog(path).append({"n": 1})

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert verify(path).ok


def test_default_path_prefers_runbook_audit_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNBOOK_AUDIT_LOG", str(tmp_path / "mine.jsonl"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))

    assert default_audit_path() == tmp_path / "mine.jsonl"


def test_default_path_uses_xdg_state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNBOOK_AUDIT_LOG", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))

    assert default_audit_path() == tmp_path / "state" / "runbook" / "audit.jsonl"


def test_default_path_falls_back_to_local_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNBOOK_AUDIT_LOG", "")
    monkeypatch.setenv("XDG_STATE_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path))

    assert default_audit_path() == tmp_path / ".local" / "state" / "runbook" / "audit.jsonl"


PROCESSES = 4
PER_PROCESS = 200
PROCESS_THREADS = 2
PARENT_THREADS = 4
PER_PARENT_THREAD = 50


def _append_many(path: Path, writer: str, count: int) -> None:
    log = AuditLog(path)
    for number in range(count):
        log.append({"writer": writer, "n": number, "output": "o" * (number % 7 * 300)})


def _process_main(path: Path, worker: int, start: Event) -> None:
    """Append PER_PROCESS records from PROCESS_THREADS threads in a child process."""
    start.wait()
    share = PER_PROCESS // PROCESS_THREADS
    threads = [
        threading.Thread(target=_append_many, args=(path, f"p{worker}t{index}", share))
        for index in range(PROCESS_THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_concurrent_processes_and_threads_keep_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    context = multiprocessing.get_context("fork")
    start = context.Event()
    # Fork before this process starts any thread of its own.
    processes = [
        context.Process(target=_process_main, args=(path, worker, start))
        for worker in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    threads = [
        threading.Thread(target=_append_many, args=(path, f"main{index}", PER_PARENT_THREAD))
        for index in range(PARENT_THREADS)
    ]
    start.set()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0

    total = PROCESSES * PER_PROCESS + PARENT_THREADS * PER_PARENT_THREAD
    assert verify(path) == Verification(ok=True, records=total, problem=None, line=None)
    lines = path.read_bytes().splitlines(keepends=True)
    assert len(lines) == total
    records = [json.loads(line) for line in lines]
    written = sorted((record["writer"], record["n"]) for record in records)
    expected = sorted(
        [
            (f"p{worker}t{index}", number)
            for worker in range(PROCESSES)
            for index in range(PROCESS_THREADS)
            for number in range(PER_PROCESS // PROCESS_THREADS)
        ]
        + [
            (f"main{index}", number)
            for index in range(PARENT_THREADS)
            for number in range(PER_PARENT_THREAD)
        ]
    )
    assert written == expected
