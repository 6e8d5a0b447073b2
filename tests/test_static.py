"""The code base stays ruff- and mypy-clean (the commands CI would run on their own)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def tool(name: str) -> list[str]:
    if shutil.which(name) is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return [sys.executable, "-m", name]


def test_ruff_lint_and_format():
    lint = subprocess.run([*tool("ruff"), "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = subprocess.run(
        [*tool("ruff"), "format", "--check", "runbook", "plugins", "runbooks"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


@pytest.mark.parametrize("target", [["runbook"], ["plugins", "runbooks"]])
def test_mypy_strict(target):
    # plugins/ and runbooks/ install as runbook.plugins and runbook.library, a
    # mapping mypy cannot follow, so they are checked as their own packages.
    done = subprocess.run(
        [*tool("mypy"), "--strict", *target], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
