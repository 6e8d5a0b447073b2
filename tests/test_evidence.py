"""Evidence rendering: strings, tables from records, and command results."""

from __future__ import annotations

import collections
import dataclasses

import pytest

from runbook.api import evidence
from runbook.evidence import render_evidence
from runbook.evidence import render_table
from runbook.hosts.host import CommandResult
from runbook.steps import Evidence
from runbook.steps import Step
from runbook.steps import current_step


@dataclasses.dataclass(frozen=True, slots=True)
class Process:
    pid: int
    command: str
    cpu_percent: float


Mount = collections.namedtuple("Mount", "path used_percent")


class Connection:
    def __init__(self, peer, state):
        self.peer = peer
        self.state = state
        self._socket = "internal"


def lines(text):
    return [line.rstrip() for line in text.splitlines()]


def test_table_from_dicts_has_the_union_of_keys_in_first_seen_order():
    text = render_table([{"pid": 1, "command": "stress"}, {"pid": 2, "user": "root"}])
    assert lines(text) == [
        "pid    command    user",
        "-----  ---------  ------",
        "1      stress",
        "2                 root",
    ]


@pytest.mark.parametrize(
    ("rows", "header", "cells"),
    [
        (
            [Process(4242, "stress", 99.0)],
            ["pid", "command", "cpu_percent"],
            ["4242", "stress", "99.0"],
        ),
        ([Mount("/var", 97)], ["path", "used_percent"], ["/var", "97"]),
        ([Connection("10.0.0.1:5432", "ESTAB")], ["peer", "state"], ["10.0.0.1:5432", "ESTAB"]),
        ([42], ["value"], ["42"]),
        (["plain text"], ["value"], ["plain", "text"]),
    ],
)
def test_table_from_records(rows, header, cells):
    text = render_table(rows)
    first, _rule, row = lines(text)
    assert first.split() == header
    assert row.split() == cells
    assert "internal" not in text  # private attributes stay private


def test_empty_table():
    assert render_table([]) == "(none)"
    assert render_evidence([]) == "(none)"


def test_cells_are_not_reinterpreted_as_numbers():
    text = render_table([{"zip": "0042", "version": "1.10", "id": "1e3"}])
    assert lines(text)[2].split() == ["0042", "1.10", "1e3"]


def test_floats_are_shortened_without_losing_small_values():
    text = render_table([{"load": 33.333333333, "hit_ratio": 0.987, "steal": 0.004}])
    assert "33.333333333" not in text
    assert "0.987" in text  # not "1.0": a cache hit ratio must not read as perfect
    assert "0.004" in text  # not "0.0": a little steal is not none


def test_long_cells_are_truncated():
    text = render_table([{"command": "java " + "-Xmx4g " * 50}])
    row = lines(text)[2]
    assert len(row) == 120
    assert row.endswith("...")


def test_string_evidence_is_kept_as_is():
    assert render_evidence("  indented\nsecond line\n") == "  indented\nsecond line\n"


def test_mapping_evidence_is_a_key_value_table():
    assert lines(render_evidence({"threshold": 90, "service": "app"})) == [
        "key        value",
        "---------  -------",
        "threshold  90",
        "service    app",
    ]


def test_sequence_and_single_record_evidence_are_tables():
    process = Process(1, "init", 0.5)
    assert render_evidence([process]) == render_table([process])
    assert render_evidence((process,)) == render_table([process])
    assert render_evidence(process) == render_table([process])


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (
            CommandResult("uptime", " 03:00:01 up 2 days\n", "", 0, 0.01),
            ["$ uptime", " 03:00:01 up 2 days"],
        ),
        (
            CommandResult("cat /missing", "", "cat: /missing: No such file\n", 1, 0.01),
            ["$ cat /missing", "[stderr]", "cat: /missing: No such file", "[exit status 1]"],
        ),
        (
            CommandResult("grep -c x f", "0\n", "", 1, 0.01),
            ["$ grep -c x f", "0", "[exit status 1]"],
        ),
    ],
)
def test_command_result_evidence_shows_the_command_output_and_failure(result, expected):
    text = render_evidence(result)
    assert [line for line in text.splitlines() if line] == expected
    assert not text.endswith("\n")


def test_other_objects_are_rendered_with_str():
    assert render_evidence(3.5) == "3.5"
    assert render_evidence(None) == "None"


def test_evidence_attaches_to_the_running_step_only():
    evidence("outside any check", "discarded")  # a unit test calling a check: no error
    step = Step("top_ok", "check", "local", read_only=True)
    token = current_step.set(step)
    try:
        evidence("Top processes", [Process(1, "init", 0.5)])
        evidence(42, "forty-two")
    finally:
        current_step.reset(token)
    assert step.evidence == [
        Evidence("Top processes", render_table([Process(1, "init", 0.5)])),
        Evidence("42", "forty-two"),
    ]
