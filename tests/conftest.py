"""Shared fixtures: a project folder with runbooks, and ways to run the CLI in it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from canned import children
from click.testing import CliRunner
from click.testing import Result

from runbook.cli.main import cli
from runbook.hosts.host import Host
from runbook.hosts.local import LocalBackend

pytest_plugins = ["sshd", "pg"]


class Project:
    """A temporary working directory with a ``runbooks/`` folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.runbooks = root / "runbooks"
        self.runbooks.mkdir()

    def write(self, relative: str, source: str) -> Path:
        """Write a file (dedented) under the project root."""
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source).lstrip("\n"), encoding="utf-8")
        return path

    def runbook(self, name: str, source: str) -> Path:
        """Write ``runbooks/<name>.py``."""
        return self.write(f"runbooks/{name}.py", source)

    def invoke(self, *args: str, input: str | None = None) -> Result:
        """Run the CLI in-process (click's CliRunner) in this folder."""
        return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``python -m runbook`` as a real subprocess here, with extra ``env`` variables."""
        return subprocess.run(
            [sys.executable, "-m", "runbook", *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            env={**os.environ, "NO_COLOR": "1", **(env or {})},
            timeout=120,
        )

    def interrupt(self, *args: str, after: str, times: int = 1) -> tuple[int, str, str, float]:
        """Run ``python -m runbook ARGS``; press Ctrl-C once ``after`` was printed ``times``.

        Returns the exit status, standard output and error, and the seconds it took to
        stop after the signal.
        """
        process = subprocess.Popen(
            [sys.executable, "-m", "runbook", *args],
            cwd=self.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "NO_COLOR": "1"},
        )
        deadline, output = time.monotonic() + 20, ""
        while output.count(after) < times and time.monotonic() < deadline:
            output += process.stdout.readline()
        time.sleep(0.3)
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
        return process.returncode, output + out, err, time.monotonic() - started

    def run_json(self, name: str, *args: str) -> tuple[Result, dict]:
        """Run a runbook in-process; return the CLI result and the parsed JSON result."""
        out = self.root / f"{name}.json"
        result = self.invoke(
            "run", name, "--json", str(out), "--report", str(self.root / f"{name}.md"), *args
        )
        assert out.exists(), result.output
        return result, json.loads(out.read_text())


@pytest.fixture(autouse=True)
def private_audit_log(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Keep every test's audit records out of the user's real audit log."""
    path = tmp_path_factory.mktemp("audit") / "audit.jsonl"
    monkeypatch.setenv("RUNBOOK_AUDIT_LOG", str(path))
    return path


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A fresh project folder that is also the working directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("RUNBOOK_PATH", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)  # tests on CI: keep its summary
    return Project(tmp_path)


@pytest.fixture
def local():
    """A Host on this machine, closed at the end."""
    host = Host(LocalBackend())
    yield host
    host.close()


@pytest.fixture
def spawn():
    """Start Python children that print 'ready' once set up (``canned.children``)."""
    with children() as start:
        yield start


@pytest.fixture
def cpu_hog():
    """A real process spinning in a busy loop, killed at the end."""
    hog = subprocess.Popen(
        [sys.executable, "-c", "print('ready', flush=True)\nwhile True: pass"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert hog.stdout.readline().strip() == "ready"
        yield hog
    finally:
        hog.kill()
        hog.wait()
        hog.stdout.close()
