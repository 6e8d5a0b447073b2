"""The distribution ships the framework, the plugins and the runbook library."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the wheel once (no dependencies, no network)."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    (path,) = out.glob("runbook-*.whl")
    return path


def test_wheel_maps_plugins_and_runbooks_under_the_runbook_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    # Every module of every subpackage ships (a subpackage missing from pyproject would not).
    modules = {str(path.relative_to(ROOT)) for path in (ROOT / "runbook").rglob("*.py")}
    assert modules - set(names) == set()
    assert "runbook/templates/report.md.j2" in names
    assert "runbook/plugins/network.py" in names
    assert "runbook/library/high_cpu.py" in names
    assert not any(name.startswith(("plugins/", "runbooks/", "tests/")) for name in names)


def test_installed_wheel_lists_the_library_from_any_directory(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    # System site-packages provide click, pluggy, jinja2 and tabulate without a download.
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--force-reinstall",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run(
        [str(env_dir / "bin" / "runbook"), "list", "--json"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert '"name": "high-cpu"' in done.stdout
    assert str(env_dir) in done.stdout  # the installed copy, not this checkout
