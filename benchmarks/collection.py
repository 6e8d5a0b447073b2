"""Collection: finding and importing 1,000 runbook modules, against 1,000 pytest modules.

``runbook list`` in a folder whose ``runbooks/`` holds N modules of one
hypothesis and one check each, against ``pytest --collect-only`` of N test
modules of one test each. Wall time of the whole command, start-up included.
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

NAMES = ("collection",)
TITLE = "collection"
WHY = "every module is imported and its runbook built (hypotheses, checks, fixtures, params)"


def run(settings: Settings) -> list[Row]:
    """Time ``runbook list`` and ``pytest --collect-only`` over N modules each."""
    modules = settings.size(1000, 20)
    with workdir("collection") as folder:
        (folder / "runbooks").mkdir()
        (folder / "tests").mkdir()
        for i in range(modules):
            (folder / "runbooks" / f"bench_collect_{i:04d}.py").write_text(
                f'"""Bench collection {i}."""\nfrom runbook import check, hypothesis\n\n'
                f'h = hypothesis("h{i}", "Nothing")\n\n\n@check(tests=h)\n'
                f"def nothing_{i}():\n    pass\n"
            )
            (folder / "tests" / f"test_collect_{i:04d}.py").write_text(
                f'"""Bench collection {i}."""\n\n\ndef test_nothing_{i}():\n    pass\n'
            )
        env = environ(RUNBOOK_AUDIT_LOG=str(folder / "audit.jsonl"))
        pytest = [*console_script("pytest"), "--collect-only", "-q", "-p", "no:cacheprovider"]
        sides = {
            "runbook": wall([*console_script("runbook"), "list"], folder, env),
            "pytest": wall([*pytest, "tests"], folder, env),
        }
        samples = alternate(sides, settings)
    ours, peer = (Stat.of(s * 1000 for s in samples[name]) for name in ("runbook", "pytest"))
    progress(f"{TITLE}: runbook {ours.median:.0f} ms, pytest {peer.median:.0f} ms")
    return [
        Row(
            TITLE,
            f"runbook list, {modules:,} runbook modules",
            f"pytest --collect-only, {modules:,} test modules",
            "ms",
            ours,
            peer,
            target=0.5,
            why=WHY,
        )
    ]
