"""Reading a runbook's JSON result in tests: entries by id, statuses, a check's evidence."""

from __future__ import annotations


def by_id(entries: list[dict]) -> dict[str, dict]:
    """Index checks, hypotheses or actions of a JSON result by their ``id``."""
    return {entry["id"]: entry for entry in entries}


def statuses(result: dict) -> dict[str, str]:
    """Map each hypothesis id to its status."""
    return {h["id"]: h["status"] for h in result["hypotheses"]}


def check_evidence(result: dict, check_id: str) -> str:
    """Return the evidence bodies of one check, joined."""
    check = by_id(result["checks"])[check_id]
    return "\n".join(item["body"] for item in check["evidence"])
