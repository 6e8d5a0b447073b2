"""The results table: on the terminal, and as ``benchmarks/RESULTS.md`` with the machine."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import Row
from benchmarks.common import Stat

PACKAGES = ("runbook", "pytest", "paramiko", "fabric", "parallel-ssh", "ansible-core")


def figure(stat: Stat, unit: str) -> str:
    """``median (min-max) unit``, with as many digits as the size needs."""
    digits = 3 if stat.median < 1 else 2 if stat.median < 10 else 1 if stat.median < 100 else 0

    def number(value: float) -> str:
        return f"{value:,.{digits}f}"

    if stat.low == stat.high:
        return f"{number(stat.median)} {unit}"
    return f"{number(stat.median)} ({number(stat.low)}-{number(stat.high)}) {unit}"


def cells(row: Row) -> list[str]:
    """One row's cells, in the table's column order."""
    return [
        row.benchmark,
        row.ours,
        row.peer,
        figure(row.runbook, row.unit),
        figure(row.other, row.unit),
        f"{row.ratio:.2f}x" if row.ratio >= 0.1 else f"{row.ratio:.2g}x",
        row.target_text,
        "met" if row.met else "NOT met",
    ]


HEADER = ["benchmark", "runbook", "peer", "runbook figure", "peer figure", "ratio", "target", ""]


def print_table(rows: Sequence[Row]) -> None:
    """Print the rows as an aligned table."""
    table = [HEADER, *(cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
    for line in table:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )


def machine() -> list[str]:
    """Lines that say where and with what the figures were measured."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass  # not Linux: the model stays unknown
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"- Machine: {model}, {os.cpu_count()} cores, Linux {platform.release()}",
        f"- Load average when the run started: {load}",
        f"- Python {platform.python_version()}; {'; '.join(versions)}",
    ]


def write_markdown(
    path: Path, rows: Sequence[Row], about: list[str], command: str, settings_line: str
) -> None:
    """Write the results page: date, machine, the table, and what the misses mean."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmark results",
        "",
        f"Measured {now} with `{command}` ({settings_line}).",
        "",
        *about,
        "",
        "Figures are medians, with min-max in parentheses; ratio = runbook / peer, so below "
        "1.0 runbook is faster (or smaller). runbook and peer runs alternate, after a "
        "warm-up, because the machine is shared: other jobs ran tests on the same cores "
        "during the run, so single samples are noisy and only medians are compared. The SSH "
        "targets are private sshds on the same machine: they share its cores with the client.",
        "",
        "| " + " | ".join([*HEADER[:-1], "met"]) + " |",
        "|" + "---|" * len(HEADER),
        *("| " + " | ".join(c.replace("|", "\\|") for c in cells(row)) + " |" for row in rows),
        "",
    ]
    missed = [row for row in rows if not row.met]
    if missed:
        lines += ["## Targets not met", ""]
        for row in missed:
            lines.append(
                f"- **{row.benchmark}** against {row.peer}: {row.ratio:.2f}x for a target of "
                f"{row.target_text}, {row.ratio / row.target:.2f} times over. "
                + (f"Why: {row.why}." if row.why else "")
            )
        lines.append("")
    path.write_text("\n".join(lines))
