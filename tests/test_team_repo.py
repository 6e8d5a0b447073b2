"""docs/examples/team-repo: the CI recipes of docs/ci.md, run step by step on the example."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
TEAM_REPO = ROOT / "docs" / "examples" / "team-repo"
CI_PAGE = ROOT / "docs" / "ci.md"
GITHUB = ".github/workflows/runbooks.yml"
GITLAB = ".gitlab-ci.yml"

_BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.S | re.M)


def _page_blocks() -> list[tuple[str, str]]:
    return _BLOCK.findall(CI_PAGE.read_text(encoding="utf-8"))


def _steps(recipe: str) -> list[str]:
    """The shell steps of a CI file, without installing (the test venv has runbook)."""
    data = yaml.safe_load((TEAM_REPO / recipe).read_text(encoding="utf-8"))
    if recipe == GITHUB:
        steps = [s["run"] for job in data["jobs"].values() for s in job["steps"] if "run" in s]
    else:
        steps = [line for job in data.values() for line in job["script"]]
    return [step for step in steps if "pip install" not in step]


@pytest.fixture
def team_repo(tmp_path: Path) -> Path:
    """A copy of the example repository, and a PATH with this runbook, pytest and ``python``."""
    copy = tmp_path / "team-repo"
    shutil.copytree(TEAM_REPO, copy)
    return copy


def _shell_env(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNBOOK_", "PYTEST_"))}
    return {**env, "PATH": path, "NO_COLOR": "1", "RUNBOOK_AUDIT_LOG": str(tmp_path / "a.jsonl")}


def test_the_page_shows_the_example_repository_as_it_is():
    blocks = {}
    for _lang, text in _page_blocks():
        first, _, rest = text.partition("\n")
        match = re.match(r"#\s*file:\s*(\S+)", first)
        if match:
            blocks[match[1]] = rest
    assert set(blocks) == {
        "runbooks/checkout_errors.py",
        "tests/test_checkout_errors.py",
        "cassettes/checkout-errors-2026-11-20.yaml",
    }
    for path, text in blocks.items():
        assert text == (TEAM_REPO / path).read_text(encoding="utf-8"), path
    yaml_blocks = [text for lang, text in _page_blocks() if lang == "yaml"]
    assert (TEAM_REPO / GITHUB).read_text(encoding="utf-8") in yaml_blocks
    assert (TEAM_REPO / GITLAB).read_text(encoding="utf-8") in yaml_blocks


@pytest.mark.parametrize("recipe", [GITHUB, GITLAB])
def test_every_step_of_the_ci_recipe_passes_on_the_example(recipe, team_repo, tmp_path):
    steps = _steps(recipe)
    assert any(step.startswith("runbook lint") for step in steps)
    assert any("--dry-run" in step for step in steps)
    assert any("pytest" in step for step in steps)
    env = _shell_env(tmp_path)
    script = "set -e\n" + "\n".join(steps)
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=team_repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "checkout-errors: 3 read-only checks on 1 host" in done.stdout
    assert "4 passed" in done.stdout
    assert (team_repo / "runbook-tests.xml").exists()


def test_a_runbook_change_that_breaks_the_recorded_incident_fails_ci(team_repo, tmp_path):
    """The point of replaying in CI: a regression in a check is caught before 3 AM."""
    source = team_repo / "runbooks" / "checkout_errors.py"
    broken = source.read_text().replace("'payment gateway refused'", "'gateway refused payment'")
    source.write_text(broken)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=team_repo,
        env=_shell_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stdout
    assert "test_the_incident_of_2026_11_20_replays FAILED" in done.stdout or (
        "FAILED tests/test_checkout_errors.py::test_the_incident_of_2026_11_20_replays"
        in done.stdout
    )
    assert "command not in cassette" in done.stdout
