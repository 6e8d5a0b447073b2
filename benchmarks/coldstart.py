"""Cold start: how long the command takes before it does anything, against pytest's.

``runbook --help`` against ``pytest --version``, and ``runbook list`` (one local
runbook plus the built-in library) against ``pytest --collect-only`` of one file.
Both run as their installed console scripts, as an operator types them.
"""

from __future__ import annotations

from benchmarks.common import Row
from benchmarks.common import Settings
from benchmarks.common import Stat
from benchmarks.common import alternate
from benchmarks.common import console_script
from benchmarks.common import environ
from benchmarks.common import progress
from benchmarks.common import wall
from benchmarks.common import workdir

NAMES = ("cold-start",)
TITLE = "cold start"
WHY = (
    "Python's own start-up is a fixed part of both; runbook then imports click, pluggy, its "
    "configuration and (for list) every built-in plugin and runbook, and pytest little more "
    "for --version"
)

RUNBOOK = '''"""Bench cold start."""
from runbook import check, hypothesis

h = hypothesis("h", "Nothing")


@check(tests=h)
def nothing():
    pass
'''

TEST = '''"""Bench cold start."""


def test_nothing():
    pass
'''


def run(settings: Settings) -> list[Row]:
    """Time the four commands, alternated."""
    with workdir("coldstart") as folder:
        (folder / "runbooks").mkdir()
        (folder / "runbooks" / "bench_cold.py").write_text(RUNBOOK)
        (folder / "test_one.py").write_text(TEST)
        env = environ(RUNBOOK_AUDIT_LOG=str(folder / "audit.jsonl"))
        runbook, pytest = console_script("runbook"), console_script("pytest")
        sides = {
            "runbook --help": wall([*runbook, "--help"], folder, env),
            "pytest --version": wall([*pytest, "--version"], folder, env),
            "runbook list": wall([*runbook, "list"], folder, env),
            "pytest --collect-only": wall(
                [*pytest, "--collect-only", "-q", "-p", "no:cacheprovider", "test_one.py"],
                folder,
                env,
            ),
        }
        samples = {name: Stat.of(values) for name, values in alternate(sides, settings).items()}
    rows = []
    for ours, peer in (
        ("runbook --help", "pytest --version"),
        ("runbook list", "pytest --collect-only"),
    ):
        runbook_ms = Stat.of(s * 1000 for s in samples[ours].samples)
        peer_ms = Stat.of(s * 1000 for s in samples[peer].samples)
        progress(f"{TITLE}: {ours} {runbook_ms.median:.0f} ms, {peer} {peer_ms.median:.0f} ms")
        label = f"{peer} of one file" if "collect" in peer else peer
        rows.append(Row(TITLE, ours, label, "ms", runbook_ms, peer_ms, target=0.5, why=WHY))
    return rows
