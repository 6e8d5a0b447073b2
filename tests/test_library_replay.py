"""The project's own CI for the built-in library: lint, dry-run, and replay real runs.

Each cassette in tests/cassettes was recorded from a real run of a built-in runbook
against a real fault (tests/cassettes/record.sh says how); expected.json holds what
that run found. Replaying must find the same, so a change to a runbook or a plugin
that changes a verdict on a real incident shows up here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import runbook.library

CASSETTES = Path(__file__).resolve().parent / "cassettes"
EXPECTED = json.loads((CASSETTES / "expected.json").read_text(encoding="utf-8"))


LIBRARY = Path(runbook.library.__file__).parent
BUILTINS = sorted(p.stem.replace("_", "-") for p in LIBRARY.glob("[!_]*.py"))


def test_every_builtin_runbook_has_a_recorded_cassette():
    assert sorted(EXPECTED) == BUILTINS
    for name in BUILTINS:
        assert (CASSETTES / f"{name}.yaml").exists(), name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_replaying_a_real_run_finds_what_the_run_found(project, name):
    result, data = project.run_json(name, "--replay", str(CASSETTES / f"{name}.yaml"))
    assert data["hosts"][0]["status"] == "ok", result.output
    assert {h["id"]: h["status"] for h in data["hypotheses"]} == EXPECTED[name]["statuses"]
    assert {c["id"]: c["outcome"] for c in data["checks"]} == EXPECTED[name]["outcomes"]
    assert any(s == "ruled_in" for s in EXPECTED[name]["statuses"].values()) == (
        result.exit_code == 1
    )


@pytest.mark.parametrize("name", BUILTINS)
def test_every_builtin_runbook_lints_and_dry_runs_clean(project, name):
    lint = project.invoke("lint", name)
    assert lint.exit_code == 0, lint.output
    plan = project.invoke("run", name, "--dry-run", "-H", "local,ssh://192.0.2.1")
    assert plan.exit_code == 0, plan.output
    assert f"{name}: " in plan.output
    assert "read-only checks on 2 hosts" in plan.output
