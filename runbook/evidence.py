"""Render evidence (strings, records, command results) as plain text tables."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any


def _as_row(item: Any) -> Mapping[str, Any]:
    if isinstance(item, Mapping):
        return item
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return {field.name: getattr(item, field.name) for field in dataclasses.fields(item)}
    if hasattr(item, "_asdict"):
        return dict(item._asdict())
    if hasattr(item, "__dict__"):
        return {key: value for key, value in vars(item).items() if not key.startswith("_")}
    return {"value": item}


def render_table(rows: list[Any]) -> str:
    """Render a list of dicts, dataclasses or objects as a plain-text table."""
    from tabulate import tabulate  # imported here: keeps `runbook --help` fast

    if not rows:
        return "(none)"
    mappings = [_as_row(row) for row in rows]
    headers: list[str] = []
    for mapping in mappings:
        headers.extend(key for key in mapping if key not in headers)
    table = [[_cell(mapping.get(key, "")) for key in headers] for mapping in mappings]
    return tabulate(table, headers=headers, tablefmt="simple", disable_numparse=True)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        # Three significant digits below 10, so 0.987 does not read as a perfect 1.0.
        return f"{value:.3g}" if 0 < abs(value) < 10 else f"{value:.1f}"
    text = str(value)
    return text if len(text) <= 120 else text[:117] + "..."


def render_evidence(data: Any) -> str:
    """Turn what a check passed to ``evidence()`` into text for reports."""
    if isinstance(data, str):
        return data
    if hasattr(data, "exit_status") and hasattr(data, "stdout"):
        text = f"$ {data.command}\n{data.stdout}"
        if data.stderr:
            text += f"\n[stderr]\n{data.stderr}"
        if data.exit_status:
            text += f"\n[exit status {data.exit_status}]"
        return text.rstrip("\n")
    if isinstance(data, Mapping):
        return render_table([{"key": key, "value": value} for key, value in data.items()])
    if isinstance(data, list | tuple):
        return render_table(list(data))
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        return render_table([data])
    return str(data)
