"""Per-check overhead: the cost of one more trivial check, against one more pytest test.

A runbook with N trivial checks and a pytest file with N trivial tests are run
at two sizes (1,000 and 10,000); the slope between them is the cost per item,
free of start-up. runbook's item is a whole check: its worker, the read-only
guard, the hooks, its row in the Markdown report and the JSON result.
"""

from __future__ import annotations

import sys
from pathlib import Path

from benchmarks.common import Row
from benchmarks.common import Settings
from benchmarks.common import Stat
from benchmarks.common import alternate
from benchmarks.common import environ
from benchmarks.common import progress
from benchmarks.common import wall
from benchmarks.common import workdir

NAMES = ("overhead",)
TITLE = "per-check overhead"
WHY = (
    "each check is a step of its own: a worker handoff with a timeout, the read-only "
    "audit hook scope, two hook calls, and a row in both the report and the JSON result"
)


def write_runbook(folder: Path, checks: int) -> None:
    """``runbooks/bench_overhead_<checks>.py`` with ``checks`` trivial checks."""
    body = "".join(f"\n\n@check(tests=h)\ndef c{i}():\n    pass\n" for i in range(checks))
    (folder / "runbooks").mkdir(exist_ok=True)
    (folder / "runbooks" / f"bench_overhead_{checks}.py").write_text(
        '"""Bench overhead."""\nfrom runbook import check, hypothesis\n\n'
        'h = hypothesis("h", "Nothing")' + body
    )


def write_tests(folder: Path, tests: int) -> None:
    """``test_many_<tests>.py`` with ``tests`` trivial tests."""
    body = "".join(f"\n\ndef test_{i}():\n    pass\n" for i in range(tests))
    (folder / f"test_many_{tests}.py").write_text('"""Bench overhead."""' + body)


def run(settings: Settings) -> list[Row]:
    """Measure both sizes for both sides; return the slope per item in ms."""
    small, large = settings.size(1000, 10), settings.size(10000, 100)
    with workdir("overhead") as folder:
        (folder / "runbook.toml").write_text(f'report_dir = "{folder / "reports"}"\n')
        env = environ(RUNBOOK_AUDIT_LOG=str(folder / "audit.jsonl"))
        sides = {}
        for n in (small, large):
            write_runbook(folder, n)
            write_tests(folder, n)
            runbook = [sys.executable, "-m", "runbook", "run", f"bench-overhead-{n}", "-q"]
            pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
            sides[f"runbook {n}"] = wall(runbook, folder, env)
            sides[f"pytest {n}"] = wall([*pytest, f"test_many_{n}.py"], folder, env)
        samples = alternate(sides, settings)
    per_item = {
        side: Stat.of(
            (big - little) / (large - small) * 1000
            for little, big in zip(
                samples[f"{side} {small}"], samples[f"{side} {large}"], strict=True
            )
        )
        for side in ("runbook", "pytest")
    }
    progress(
        f"{TITLE}: runbook {per_item['runbook'].median:.3f} ms/check, "
        f"pytest {per_item['pytest'].median:.3f} ms/test"
    )
    return [
        Row(
            TITLE,
            f"runbook run, {small:,} vs {large:,} checks (slope)",
            f"pytest, {small:,} vs {large:,} tests (slope)",
            "ms/item",
            per_item["runbook"],
            per_item["pytest"],
            target=0.25,
            why=WHY,
        )
    ]
