"""Run the benchmarks against their peers and write ``benchmarks/RESULTS.md``.

python -m benchmarks                 # every benchmark, full size (about 25 minutes)
python -m benchmarks --quick         # every benchmark once at a tiny size
python -m benchmarks --only logs,fan-out
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from pathlib import Path

from benchmarks.common import ROOT
from benchmarks.common import Row
from benchmarks.common import Settings
from benchmarks.results import machine
from benchmarks.results import print_table
from benchmarks.results import write_markdown

#: The benchmark modules, in the order of the results table.
MODULES = ("overhead", "coldstart", "collection", "sshcommand", "fanout", "logs")
DEFAULT_CACHE = Path("/var/tmp/runbook-bench-cache")


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="runbook against its peers, side by side."
    )
    parser.add_argument("--quick", action="store_true", help="once each, at a tiny size")
    parser.add_argument("--only", help="comma-separated benchmark names (see --list)")
    parser.add_argument("--list", action="store_true", help="list the benchmark names")
    parser.add_argument("--repeat", type=int, help="measured rounds (default 5; 1 with --quick)")
    parser.add_argument("--warmup", type=int, help="unmeasured rounds first (default 1)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="generated inputs")
    parser.add_argument(
        "--results",
        type=Path,
        help="results page (default benchmarks/RESULTS.md; none with --quick)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks; return 1 if one of them could not run."""
    options = parse(argv)
    modules = {name: importlib.import_module(f"benchmarks.{name}") for name in MODULES}
    known = {label: name for name, module in modules.items() for label in module.NAMES}
    if options.list:
        print("\n".join(known))
        return 0
    wanted = set(options.only.split(",")) if options.only else set(known)
    unknown = wanted - set(known)
    if unknown:
        print(
            f"unknown benchmark(s): {', '.join(sorted(unknown))}; known: {', '.join(known)}",
            file=sys.stderr,
        )
        return 4
    if (options.repeat is not None and options.repeat < 1) or (options.warmup or 0) < 0:
        print("--repeat must be at least 1 and --warmup at least 0", file=sys.stderr)
        return 4
    settings = Settings(
        quick=options.quick,
        repeat=options.repeat or (1 if options.quick else 5),
        warmup=options.warmup if options.warmup is not None else (0 if options.quick else 1),
        cache=options.cache,
    )
    about = machine()
    rows: list[Row] = []
    failed = []
    for name, module in modules.items():
        if not wanted & set(module.NAMES):
            continue
        print(f"{name}: running", file=sys.stderr, flush=True)
        try:
            rows += [r for r in module.run(settings) if _selected(r, module, wanted)]
        except Exception:
            failed.append(name)
            print(f"{name}: FAILED\n{traceback.format_exc()}", file=sys.stderr)
        except BaseException as exc:  # pytest.skip / pytest.fail from the sshd helpers
            if isinstance(exc, KeyboardInterrupt):
                raise
            failed.append(name)
            print(f"{name}: could not run: {exc}", file=sys.stderr)
    print()
    print_table(rows)
    results = options.results or (None if options.quick else ROOT / "benchmarks" / "RESULTS.md")
    if results is not None and rows:
        line = f"{settings.repeat} rounds after {settings.warmup} warm-up"
        command = "python -m benchmarks" + (" " + " ".join(argv or sys.argv[1:])).rstrip()
        write_markdown(results, rows, about, command, line)
        print(f"\nwrote {results}")
    return 1 if failed else 0


def _selected(row: Row, module: object, wanted: set[str]) -> bool:
    """A module with several names (fan-out and memory) keeps only the rows asked for."""
    names: tuple[str, ...] = getattr(module, "NAMES", ())
    if len(names) < 2:
        return True
    return ("memory" if row.benchmark == "memory" else names[0]) in wanted


if __name__ == "__main__":
    sys.exit(main())
