"""The pytest plugin for teams that test their own runbooks (entry point ``pytest11``).

A test asks for the ``runbook_runner`` fixture and runs a runbook against canned
command outputs or a recorded cassette; nothing is contacted and nothing is
changed. The run goes through the same code as ``runbook run --replay``, so a
test sees exactly what the CLI would::

    def test_a_full_disk_is_ruled_in(runbook_runner):
        result = runbook_runner.run("disk-full", outputs={"df -P -k /": DF_FULL})
        result.assert_statuses({"filesystem-full": "ruled_in"})

This module is imported by every pytest session where ``runbook`` is installed,
so it imports nothing heavy until a test uses the fixture.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

#: Canned outputs: ``{command: stdout}`` or ``{command: {"stdout", "stderr", "exit_status"}}``.
Outputs = Mapping[str, "str | Mapping[str, Any]"]


class RunbookResult:
    """What a runbook run found: its JSON result (schema ``runbook.result/1``) and output."""

    def __init__(self, data: dict[str, Any], output: str) -> None:
        self.data = data
        self.output = output

    def __repr__(self) -> str:
        return f"<RunbookResult {self.data['runbook']['name']} exit {self.exit_code}>"

    @property
    def exit_code(self) -> int:
        """The exit status ``runbook run`` would have ended with."""
        code: int = self.data["exit_code"]
        return code

    @property
    def statuses(self) -> dict[str, str]:
        """Each hypothesis id with its status (``ruled_in``, ``ruled_out``, ...)."""
        return {h["id"]: h["status"] for h in self.data["hypotheses"]}

    def hypothesis(self, hypothesis_id: str) -> dict[str, Any]:
        """One hypothesis of the JSON result (status, hosts, evidence)."""
        return _only(self.data["hypotheses"], hypothesis_id, "hypothesis")

    def check(self, check_id: str, host: str | None = None) -> dict[str, Any]:
        """One check of the JSON result (outcome, message, evidence), on ``host`` if given."""
        entries = [c for c in self.data["checks"] if host is None or c["host"] == host]
        return _only(entries, check_id, "check")

    def assert_statuses(self, expected: Mapping[str, str]) -> None:
        """Assert hypothesis statuses; the failure shows every check that explains them."""
        actual = {key: self.statuses.get(key, "<no such hypothesis>") for key in expected}
        if actual == dict(expected):
            return
        lines = [f"  {key}: expected {expected[key]}, got {actual[key]}" for key in expected]
        wrong = [key for key in expected if actual[key] != expected[key]]
        lines.append("checks:")
        for check in self.data["checks"]:
            lines.append(
                f"  {check['id']} on {check['host']}: {check['outcome']}"
                + (f" ({check['message']})" if check.get("message") else "")
            )
        raise AssertionError(f"hypotheses {', '.join(wrong)} differ:\n" + "\n".join(lines))


def _only(entries: list[dict[str, Any]], wanted: str, kind: str) -> dict[str, Any]:
    for entry in entries:
        if entry["id"] == wanted:
            return entry
    known = ", ".join(dict.fromkeys(e["id"] for e in entries)) or "none"
    raise KeyError(f"no {kind} {wanted!r} in the result; there are: {known}")


class RunbookRunner:
    """Runs runbooks of the current project in-process, against canned outputs or a cassette."""

    def run(
        self,
        name: str,
        *,
        outputs: Outputs | None = None,
        cassette: str | os.PathLike[str] | None = None,
        params: Mapping[str, object] | None = None,
        host: str = "local",
        keyword: str | None = None,
    ) -> RunbookResult:
        """Run runbook ``name`` read-only and return what it found.

        Give either ``outputs`` (the canned answers of one fake target named
        ``host``: a command not listed makes its check an ``error`` that names
        it) or a ``cassette`` recorded with ``runbook run --record``. ``params``
        override the runbook's parameters like ``--param``. The run goes through
        the Session API in this process; no file is written but the audit log.
        """
        from runbook.hosts.cassette import Cassette
        from runbook.output.jsonresult import dumps
        from runbook.session import Session

        if (outputs is None) == (cassette is None):
            raise TypeError("give either outputs= or cassette=")
        if outputs is not None:
            tape, source = Cassette.from_outputs(name, outputs, host), "the canned outputs"
        else:
            assert cassette is not None
            tape, source = Cassette.load(Path(cassette)), os.fspath(cassette)
        overrides = {key: _param_text(value) for key, value in (params or {}).items()}
        terminal = io.StringIO()
        with Session.start({"verbosity": -1, "stream": terminal}) as session:
            runbook = session.lookup(name)
            session.replay(runbook, tape, source)
            options = session.default_options(
                targets=tape.targets(), params={**tape.params, **overrides}, keyword=keyword
            )
            result = session.run(runbook, options)
        return RunbookResult(json.loads(dumps(result)), terminal.getvalue())


def _param_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value)


@pytest.fixture
def runbook_runner(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunbookRunner]:
    """Run runbooks of this project against canned outputs or cassettes (no target contacted).

    The audit log of these runs goes to a temporary folder; nothing else is written.
    """
    folder = tmp_path_factory.mktemp("runbook")
    monkeypatch.setenv("RUNBOOK_AUDIT_LOG", str(folder / "audit.jsonl"))
    monkeypatch.setenv("NO_COLOR", "1")
    yield RunbookRunner()
